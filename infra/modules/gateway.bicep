// The gateway (`mcpgate serve`) on Azure Container Apps: external ingress on 443 to port 8000,
// at least one replica, HTTP-concurrency scaling, /healthz (liveness) and /readyz (readiness:
// Redis reachable and a function key loaded). Every setting comes from the other modules; no
// secret is set here: the gateway reads the function key and the session-key ring from Key
// Vault at runtime with its managed identity.
param location string
param tags object
param name string
param image string
param containerAppsEnvironmentName string
param gatewayIdentityName string
param registryLoginServer string
param publicUrl string
param backendUrl string
param redisUrl string
param keyVaultUrl string
param functionKeySecretName string
param sessionKeysSecretName string
param clientsStoreUrl string
param tenantId string
param upstreamClientId string
param upstreamScopes string
param allowedTenants string
param requiredRoles string

@minValue(1)
param minReplicas int = 1
param maxReplicas int = 10
@description('Concurrent requests per replica before the HTTP scale rule adds one (SSE streams count).')
param concurrentRequests int = 100

var port = 8000

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-02-02-preview' existing = {
  name: containerAppsEnvironmentName
}

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: gatewayIdentityName
}

var baseEnv = [
  { name: 'MCPGATE_PUBLIC_URL', value: publicUrl }
  { name: 'MCPGATE_LISTEN', value: '0.0.0.0:${port}' }
  { name: 'MCPGATE_METRICS_LISTEN', value: '127.0.0.1:9090' }
  { name: 'MCPGATE_BACKEND_URL', value: backendUrl }
  { name: 'MCPGATE_REDIS_URL', value: redisUrl }
  { name: 'MCPGATE_REDIS_ENTRA', value: 'true' }
  { name: 'MCPGATE_KEYVAULT_URL', value: keyVaultUrl }
  { name: 'MCPGATE_FUNCTION_KEY_SECRET', value: functionKeySecretName }
  { name: 'MCPGATE_SESSION_KEYS_SECRET', value: sessionKeysSecretName }
  { name: 'MCPGATE_CLIENTS_STORE', value: clientsStoreUrl }
  { name: 'MCPGATE_ENTRA_TENANT_ID', value: tenantId }
  { name: 'MCPGATE_UPSTREAM_CLIENT_ID', value: upstreamClientId }
  { name: 'MCPGATE_UPSTREAM_FIC_CLIENT_ID', value: gatewayIdentity.properties.clientId }
  { name: 'MCPGATE_UPSTREAM_SCOPES', value: upstreamScopes }
  { name: 'MCPGATE_TRUSTED_PROXIES', value: '1' } // Container Apps ingress appends the caller's address to X-Forwarded-For
  { name: 'AZURE_CLIENT_ID', value: gatewayIdentity.properties.clientId }
  { name: 'OTEL_SERVICE_NAME', value: 'mcpgate' }
]
var optionalEnv = concat(empty(allowedTenants) ? [] : [
  { name: 'MCPGATE_ALLOWED_TENANTS', value: allowedTenants }
], empty(requiredRoles) ? [] : [
  { name: 'MCPGATE_REQUIRED_ROLES', value: requiredRoles }
])

resource gateway 'Microsoft.App/containerApps@2025-01-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'gateway' })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${gatewayIdentity.id}': {} }
  }
  properties: {
    managedEnvironmentId: managedEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: port
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        { server: registryLoginServer, identity: gatewayIdentity.id }
      ]
    }
    template: {
      containers: [
        {
          name: 'gateway'
          image: image
          resources: { cpu: json('0.5'), memory: '1Gi' }
          env: concat(baseEnv, optionalEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: { path: '/healthz', port: port }
              periodSeconds: 2
              failureThreshold: 30
            }
            {
              type: 'Liveness'
              httpGet: { path: '/healthz', port: port }
              periodSeconds: 10
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: { path: '/readyz', port: port }
              periodSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: { metadata: { concurrentRequests: string(concurrentRequests) } }
          }
        ]
      }
    }
  }
}

output name string = gateway.name
output fqdn string = gateway.properties.configuration.ingress.fqdn
output outboundIpAddresses array = gateway.properties.outboundIpAddresses
