// Broken on purpose: infracheck's unit tests expect exactly the errors listed in roles_test.
param principalId string
param location string = 'westus2'

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: 'id-gw'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}

// ok: a declared identity
resource good 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('a')
  scope: vault
  properties: {
    principalId: gatewayIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  }
}

// ok: the deployer param
resource deployer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid('b')
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
  }
}

// bad: gatewayIdentty does not exist (typo)
resource typo 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('c')
  scope: vault
  properties: {
    principalId: gatewayIdentty.properties.principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  }
}

// bad: the vault is not an identity
resource notIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('d')
  scope: vault
  properties: {
    principalId: vault.properties.principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  }
}

// bad: Owner is not a reviewed role
resource owner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('e')
  scope: vault
  properties: {
    principalId: gatewayIdentity.properties.principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '8e3af657-a8ff-443c-a75c-2fe8c4bcb635')
  }
}

// bad: principalId is an undeclared param
resource noParam 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('f')
  scope: vault
  properties: {
    principalId: deployerId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
  }
}
