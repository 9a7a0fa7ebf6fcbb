// The MCP snippet server: a Go custom handler (`handler`, linux/amd64) on Flex Consumption,
// runtime `custom` 1.0. Host storage and snippets use the function identity through the
// identity-based AzureWebJobsStorage__* settings (shared keys are off on the account).
// Inbound traffic is denied except from the gateway: its outbound IP addresses, or with
// VNET_ENABLED its Container Apps subnet (service endpoint Microsoft.Web). The deployment
// (scm) site keeps its own rules so that `azd deploy` from the deployer's machine works; it
// accepts Entra-authenticated deployments only (basic publishing credentials are off).
// No function key is created here: on Flex the key APIs fail until code is deployed, so the
// postdeploy hook creates the gateway's key with `mcpgate keys rotate --if-missing`.
param location string
param tags object
param name string
param planName string
param functionIdentityName string
param storageAccountName string
param deploymentContainerName string
param appInsightsName string
param principalId string
@allowed(['User', 'ServicePrincipal'])
param principalType string
@description('Gateway outbound IP addresses admitted by the access restrictions (no VNet).')
param allowedIpAddresses array
@description('Gateway subnet admitted by the access restrictions (VNET_ENABLED).')
param allowedSubnetId string
@description('Subnet for the function app\'s outbound VNet integration (VNET_ENABLED).')
param integrationSubnetId string

param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

resource functionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: functionIdentityName
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var ipRules = [for (ip, i) in allowedIpAddresses: {
  name: 'gateway-ip-${i}'
  action: 'Allow'
  priority: 110 + i
  ipAddress: contains(ip, '/') ? ip : '${ip}/32'
}]
var subnetRules = empty(allowedSubnetId) ? [] : [
  {
    name: 'gateway-subnet'
    action: 'Allow'
    priority: 100
    vnetSubnetResourceId: allowedSubnetId
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'functionapp' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${functionIdentity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(integrationSubnetId) ? null : integrationSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      ipSecurityRestrictionsDefaultAction: 'Deny'
      ipSecurityRestrictions: concat(subnetRules, ipRules)
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: 'Allow'
      // Flex Consumption: no FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
      // WEBSITE_RUN_FROM_PACKAGE or WEBSITE_CONTENT* (runtime lives in functionAppConfig).
      appSettings: [
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: functionIdentity.properties.clientId }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: storageAccount.properties.primaryEndpoints.blob }
        { name: 'AZURE_CLIENT_ID', value: functionIdentity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${functionIdentity.properties.clientId};Authorization=AAD' }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: functionIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'custom', version: '1.0' }
    }
  }
}

resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: { allow: false }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: { allow: false }
}

// Monitoring Metrics Publisher for the function identity (App Insights with Entra ingestion).
resource functionMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionIdentity.id, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    principalId: functionIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
  }
}

// Website Contributor on this app for the deploying principal: `mcpgate keys rotate` creates
// and deletes host keys through ARM.
resource deployerWebsiteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(functionApp.id, principalId, 'de139f84-1756-47ae-9be6-808fbbe84772')
  scope: functionApp
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'de139f84-1756-47ae-9be6-808fbbe84772')
  }
}

output name string = functionApp.name
output url string = 'https://${functionApp.properties.defaultHostName}'
