// Container Apps environment (workload-profiles type, Consumption profile) with the managed
// OpenTelemetry agent: traces and logs the gateway exports over OTLP go to Application
// Insights. The agent injects OTEL_EXPORTER_OTLP_ENDPOINT (and the protocol) into every app of
// the environment, so the gateway's container does not set it. appInsightsConfiguration and
// openTelemetryConfiguration exist only in preview API versions (not in GA 2025-07-01).
param location string
param tags object
param environmentName string
param logAnalyticsName string
param appInsightsName string
@description('Subnet for VNET_ENABLED (empty: Azure-managed network).')
param infrastructureSubnetId string

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-02-02-preview' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logAnalytics.properties.customerId
        sharedKey: logAnalytics.listKeys().primarySharedKey
      }
    }
    appInsightsConfiguration: {
      connectionString: appInsights.properties.ConnectionString
    }
    openTelemetryConfiguration: {
      tracesConfiguration: { destinations: ['appInsights'] }
      logsConfiguration: { destinations: ['appInsights'] }
    }
    workloadProfiles: [
      { name: 'Consumption', workloadProfileType: 'Consumption' }
    ]
    vnetConfiguration: empty(infrastructureSubnetId) ? null : {
      infrastructureSubnetId: infrastructureSubnetId
      internal: false
    }
  }
}

output name string = managedEnvironment.name
output id string = managedEnvironment.id
output defaultDomain string = managedEnvironment.properties.defaultDomain
output staticIp string = managedEnvironment.properties.staticIp
