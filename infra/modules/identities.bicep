// Two user-assigned managed identities: one for the gateway (ACR pull, Key Vault secrets,
// Redis, the registrations container, the federated credential of the Entra app) and one for
// the function app (its host storage and the snippets).
param location string
param tags object
param gatewayIdentityName string
param functionIdentityName string

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: gatewayIdentityName
  location: location
  tags: tags
}

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionIdentityName
  location: location
  tags: tags
}

output gatewayIdentityName string = gatewayIdentity.name
output gatewayIdentityId string = gatewayIdentity.id
output gatewayIdentityPrincipalId string = gatewayIdentity.properties.principalId
output gatewayIdentityClientId string = gatewayIdentity.properties.clientId
output functionIdentityName string = functionIdentity.name
output functionIdentityId string = functionIdentity.id
output functionIdentityPrincipalId string = functionIdentity.properties.principalId
output functionIdentityClientId string = functionIdentity.properties.clientId
