// mcpgate on Azure without API Management: `azd up` entry point (subscription scope).
// Creates the resource group and calls one module per concern. Every output below is written
// by azd to .azure/<env>/.env and handed to the hooks in infra/hooks/ as environment variables.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: the resource group is rg-<name>, and it seeds every resource name.')
param environmentName string

// Regions where Flex Consumption, Azure Managed Redis and Container Apps all exist (the
// sample's list; see docs/deploy.md "Confirm on a real subscription").
@minLength(1)
@allowed([
  'australiaeast'
  'eastasia'
  'eastus'
  'eastus2'
  'northeurope'
  'southcentralus'
  'southeastasia'
  'swedencentral'
  'uksouth'
  'westus2'
])
@metadata({ azd: { type: 'location' } })
@description('Primary region for every resource.')
param location string

@description('Object id of the deploying user or service principal (azd fills it): Key Vault Secrets Officer and Website Contributor, so the hooks can write the session-key ring and the function key.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
param principalType string = 'User'

@description('VNet integration: private endpoints for Storage, Redis and Key Vault; the function app accepts traffic only from the gateway subnet.')
param vnetEnabled bool = false

@description('Set by azd (SERVICE_GATEWAY_RESOURCE_EXISTS): keep the deployed gateway image on re-provision.')
param gatewayExists bool = false

@description('Entra: only users and groups assigned to the app may sign in.')
param appRoleAssignmentRequired bool = false

@description('Entra serviceManagementReference, required by some tenants for new app registrations.')
param serviceManagementReference string = ''

@description('Upstream (Microsoft Graph) scopes the gateway requests besides openid profile offline_access.')
param upstreamScopes string = 'User.Read'

@description('Comma-separated Entra tenant ids allowed to sign in (empty: any tenant the app accepts; the app is single-tenant).')
param allowedTenants string = ''
@description('Comma-separated app roles (e.g. MCP.User) or group ids; a user needs one of them (empty: no role check).')
param requiredRoles string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

// Names known before anything exists: the gateway's URL and the function app's host name are
// derived from them, which is what breaks the redirect-URI / backend-URL cycles.
var gatewayAppName = '${abbrs.appContainerApps}gw-${resourceToken}'
var functionAppName = '${abbrs.webSitesFunctions}mcp-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var functionKeySecretName = 'function-key'
var sessionKeysSecretName = 'session-keys'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
  }
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    gatewayIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}gw-${resourceToken}'
    functionIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}func-${resourceToken}'
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    vnetName: '${abbrs.networkVirtualNetworks}${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: '${abbrs.storageStorageAccounts}${resourceToken}'
    deploymentContainerName: deploymentContainerName
    functionIdentityName: identities.outputs.functionIdentityName
    gatewayIdentityName: identities.outputs.gatewayIdentityName
    vnetEnabled: vnetEnabled
    privateEndpointSubnetId: vnetEnabled ? network!.outputs.privateEndpointSubnetId : ''
    blobDnsZoneId: vnetEnabled ? network!.outputs.blobDnsZoneId : ''
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    keyVaultName: '${abbrs.keyVaultVaults}${resourceToken}'
    gatewayIdentityName: identities.outputs.gatewayIdentityName
    principalId: principalId
    principalType: principalType
    vnetEnabled: vnetEnabled
    privateEndpointSubnetId: vnetEnabled ? network!.outputs.privateEndpointSubnetId : ''
    vaultDnsZoneId: vnetEnabled ? network!.outputs.vaultDnsZoneId : ''
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: rg
  params: {
    location: location
    tags: tags
    redisName: '${abbrs.cacheRedisEnterprise}${resourceToken}'
    gatewayIdentityName: identities.outputs.gatewayIdentityName
    vnetEnabled: vnetEnabled
    privateEndpointSubnetId: vnetEnabled ? network!.outputs.privateEndpointSubnetId : ''
    redisDnsZoneId: vnetEnabled ? network!.outputs.redisDnsZoneId : ''
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: tags
    registryName: '${abbrs.containerRegistryRegistries}${resourceToken}'
    gatewayIdentityName: identities.outputs.gatewayIdentityName
  }
}

module containerAppsEnv 'modules/containerapps-env.bicep' = {
  name: 'containerapps-env'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: '${abbrs.appManagedEnvironments}${resourceToken}'
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    appInsightsName: monitoring.outputs.appInsightsName
    infrastructureSubnetId: vnetEnabled ? network!.outputs.containerAppsSubnetId : ''
  }
}

// The gateway's public origin, predicted from the environment's default domain before the
// container app exists (Container Apps gives an external app <name>.<defaultDomain>).
var gatewayUrl = 'https://${gatewayAppName}.${containerAppsEnv.outputs.defaultDomain}'

module entraApp 'modules/entra-app.bicep' = {
  name: 'entra-app'
  scope: rg
  params: {
    appUniqueName: 'mcpgate-${resourceToken}'
    displayName: 'mcpgate (${environmentName})'
    redirectUri: '${gatewayUrl}/oauth-callback'
    identifierUri: 'api://${subscription().tenantId}/mcpgate-${resourceToken}'
    gatewayIdentityPrincipalId: identities.outputs.gatewayIdentityPrincipalId
    appRoleAssignmentRequired: appRoleAssignmentRequired
    serviceManagementReference: serviceManagementReference
  }
}

module gatewayImage 'modules/fetch-container-image.bicep' = {
  name: 'gateway-image'
  scope: rg
  params: {
    exists: gatewayExists
    name: gatewayAppName
  }
}

module gateway 'modules/gateway.bicep' = {
  name: 'gateway'
  scope: rg
  params: {
    location: location
    tags: tags
    name: gatewayAppName
    image: gatewayImage.outputs.?containers[?0].?image ?? 'mcr.microsoft.com/k8se/quickstart:latest'
    containerAppsEnvironmentName: containerAppsEnv.outputs.name
    gatewayIdentityName: identities.outputs.gatewayIdentityName
    registryLoginServer: registry.outputs.loginServer
    publicUrl: gatewayUrl
    backendUrl: 'https://${functionAppName}.azurewebsites.net'
    redisUrl: 'rediss://${redis.outputs.hostName}:${redis.outputs.port}'
    keyVaultUrl: keyVault.outputs.vaultUri
    functionKeySecretName: functionKeySecretName
    sessionKeysSecretName: sessionKeysSecretName
    clientsStoreUrl: storage.outputs.registrationsContainerUrl
    tenantId: subscription().tenantId
    upstreamClientId: entraApp.outputs.appId
    upstreamScopes: upstreamScopes
    allowedTenants: allowedTenants
    requiredRoles: requiredRoles
  }
  // Implicit dependencies through the outputs above: the identity's roles (AcrPull, Key Vault,
  // Redis, registrations) exist before the first revision starts.
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    functionIdentityName: identities.outputs.functionIdentityName
    storageAccountName: storage.outputs.storageAccountName
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: principalId
    principalType: principalType
    // Inbound: only the gateway. Without a VNet, its outbound IPs; with one, its subnet.
    allowedIpAddresses: vnetEnabled ? [] : gateway.outputs.outboundIpAddresses
    allowedSubnetId: vnetEnabled ? network!.outputs.containerAppsSubnetId : ''
    integrationSubnetId: vnetEnabled ? network!.outputs.functionSubnetId : ''
  }
}

// ---- outputs (azd writes them to .azure/<env>/.env; hooks read them) ----
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = subscription().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_APPS_ENVIRONMENT_NAME string = containerAppsEnv.outputs.name
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.appInsightsConnectionString

output SERVICE_GATEWAY_NAME string = gateway.outputs.name
output SERVICE_FUNCTIONAPP_NAME string = functionApp.outputs.name
output GATEWAY_URL string = gatewayUrl
output GATEWAY_FQDN string = gateway.outputs.fqdn
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.url

output KEYVAULT_URL string = keyVault.outputs.vaultUri
output KEYVAULT_NAME string = keyVault.outputs.name
output FUNCTION_KEY_SECRET string = functionKeySecretName
output SESSION_KEYS_SECRET string = sessionKeysSecretName
output REDIS_HOST string = redis.outputs.hostName
output STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName

output ENTRA_APP_CLIENT_ID string = entraApp.outputs.appId
output GATEWAY_IDENTITY_CLIENT_ID string = identities.outputs.gatewayIdentityClientId

output MCP_ENDPOINT string = '${gatewayUrl}/mcp'
output MCP_SSE_ENDPOINT string = '${gatewayUrl}/mcp/sse'
// Start the Inspector UI, then connect with transport Streamable HTTP to the URL in the comment
// (the UI runs the OAuth flow; the comment keeps the line safe to paste into a shell).
output MCP_INSPECTOR_COMMAND string = 'npx @modelcontextprotocol/inspector  # Transport: Streamable HTTP, URL: ${gatewayUrl}/mcp'
