// Azure Managed Redis (Microsoft.Cache/redisEnterprise, GA 2025-07-01): Entra authentication
// only (access keys off), TLS on port 10000, EnterpriseCluster so that a plain (non-cluster)
// go-redis client works. The gateway identity gets the `default` access policy; the gateway
// authenticates with go-redis-entraid (MCPGATE_REDIS_ENTRA=true, AZURE_CLIENT_ID).
param location string
param tags object
param redisName string
param gatewayIdentityName string
param vnetEnabled bool
param privateEndpointSubnetId string
param redisDnsZoneId string

@description('Azure Managed Redis SKU; Balanced_B0 is the smallest.')
param skuName string = 'Balanced_B0'

@description('High availability (a replica). Disabled halves the cost; sessions may be lost during maintenance.')
@allowed(['Enabled', 'Disabled'])
param highAvailability string = 'Enabled'

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: gatewayIdentityName
}

resource redisCluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: redisName
  location: location
  tags: tags
  sku: { name: skuName }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: redisCluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Disabled'
  }
}

// Entra access for the gateway identity (assignment names allow letters and digits only).
resource gatewayAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: redisDatabase
  name: 'gateway'
  properties: {
    accessPolicyName: 'default'
    user: { objectId: gatewayIdentity.properties.principalId }
  }
}

module redisEndpoint 'private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-redis'
  params: {
    location: location
    tags: tags
    name: 'pe-redis-${redisName}'
    subnetId: privateEndpointSubnetId
    targetResourceId: redisCluster.id
    groupId: 'redisEnterprise'
    dnsZoneId: redisDnsZoneId
  }
}

output hostName string = redisCluster.properties.hostName
output port int = redisDatabase.properties.port
