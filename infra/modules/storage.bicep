// Storage: shared-key access off, so every client uses Entra ID. Containers: `snippets` (the
// MCP tools' data), `registrations` (the gateway's durable client registrations) and the Flex
// Consumption deployment container. Roles: the function identity owns blob data in the account
// (the Functions host keeps its keys and leases there); the gateway identity may only read and
// write the `registrations` container.
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param functionIdentityName string
param gatewayIdentityName string
param vnetEnabled bool
param privateEndpointSubnetId string
param blobDnsZoneId string

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: functionIdentityName
}

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: gatewayIdentityName
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: vnetEnabled ? 'Deny' : 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
}

resource snippetsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'snippets'
}

resource registrationsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'registrations'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
}

// Storage Blob Data Owner for the function app's identity (host storage, deployment package, snippets).
resource functionBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, functionIdentity.id, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storageAccount
  properties: {
    principalId: functionIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  }
}

// Storage Blob Data Contributor for the gateway's identity, on the registrations container only.
resource gatewayRegistrationsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registrationsContainer.id, gatewayIdentity.id, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: registrationsContainer
  properties: {
    principalId: gatewayIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  }
}

module blobEndpoint 'private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-blob'
  params: {
    location: location
    tags: tags
    name: 'pe-blob-${storageAccountName}'
    subnetId: privateEndpointSubnetId
    targetResourceId: storageAccount.id
    groupId: 'blob'
    dnsZoneId: blobDnsZoneId
  }
}

output storageAccountName string = storageAccount.name
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob
output registrationsContainerUrl string = '${storageAccount.properties.primaryEndpoints.blob}${registrationsContainer.name}'
output snippetsContainerName string = snippetsContainer.name
output deploymentContainerName string = deploymentContainer.name
