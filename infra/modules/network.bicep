// VNET_ENABLED=true: one VNet with a subnet for the Container Apps environment (with a
// Microsoft.Web service endpoint, so the function app can admit exactly that subnet), a subnet
// for the function app's outbound VNet integration, and a subnet for private endpoints, plus
// the private DNS zones of Blob Storage, Key Vault and Azure Managed Redis.
param location string
param tags object
param vnetName string

var blobZoneName = 'privatelink.blob.${environment().suffixes.storage}'
var vaultZoneName = 'privatelink.vaultcore.azure.net'
var redisZoneName = 'privatelink.redis.azure.net'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.0.0.0/16'] }
    subnets: [
      {
        name: 'containerapps'
        properties: {
          addressPrefix: '10.0.0.0/24'
          delegations: [{ name: 'containerapps', properties: { serviceName: 'Microsoft.App/environments' } }]
          serviceEndpoints: [{ service: 'Microsoft.Web' }]
        }
      }
      {
        name: 'functionapp'
        properties: {
          addressPrefix: '10.0.1.0/24'
          delegations: [{ name: 'flex', properties: { serviceName: 'Microsoft.App/environments' } }]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: '10.0.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource blobZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: blobZoneName
  location: 'global'
  tags: tags
}

resource vaultZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: vaultZoneName
  location: 'global'
  tags: tags
}

resource redisZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: redisZoneName
  location: 'global'
  tags: tags
}

resource blobZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: blobZone
  name: '${vnetName}-link'
  location: 'global'
  properties: { registrationEnabled: false, virtualNetwork: { id: vnet.id } }
}

resource vaultZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: vaultZone
  name: '${vnetName}-link'
  location: 'global'
  properties: { registrationEnabled: false, virtualNetwork: { id: vnet.id } }
}

resource redisZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: redisZone
  name: '${vnetName}-link'
  location: 'global'
  properties: { registrationEnabled: false, virtualNetwork: { id: vnet.id } }
}

output vnetId string = vnet.id
output containerAppsSubnetId string = vnet.properties.subnets[0].id
output functionSubnetId string = vnet.properties.subnets[1].id
output privateEndpointSubnetId string = vnet.properties.subnets[2].id
output blobDnsZoneId string = blobZone.id
output vaultDnsZoneId string = vaultZone.id
output redisDnsZoneId string = redisZone.id
