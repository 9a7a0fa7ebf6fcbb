// Key Vault in RBAC mode: holds the function key (`function-key`) and the session-key ring
// (`session-keys`). The gateway identity reads them (Key Vault Secrets User); the deploying
// principal writes them from the hooks (Key Vault Secrets Officer). Public network access stays
// on even with VNET_ENABLED, because the hooks run on the deployer's machine; the gateway then
// reaches the vault through its private endpoint.
param location string
param tags object
param keyVaultName string
param gatewayIdentityName string
param principalId string
@allowed(['User', 'ServicePrincipal'])
param principalType string
param vnetEnabled bool
param privateEndpointSubnetId string
param vaultDnsZoneId string

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: gatewayIdentityName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

// Key Vault Secrets User for the gateway's identity.
resource gatewaySecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, gatewayIdentity.id, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    principalId: gatewayIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  }
}

// Key Vault Secrets Officer for the deploying principal (AZURE_PRINCIPAL_ID): the hooks write
// the session-key ring and the function key.
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
  scope: vault
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
  }
}

module vaultEndpoint 'private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-vault'
  params: {
    location: location
    tags: tags
    name: 'pe-vault-${keyVaultName}'
    subnetId: privateEndpointSubnetId
    targetResourceId: vault.id
    groupId: 'vault'
    dnsZoneId: vaultDnsZoneId
  }
}

output name string = vault.name
output vaultUri string = vault.properties.vaultUri
