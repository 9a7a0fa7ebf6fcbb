// The gateway's Entra app registration (Microsoft Graph Bicep extension, v1.0 GA types).
// No client secret anywhere: a federated identity credential trusts the gateway's
// user-assigned managed identity, whose token the gateway sends as client_assertion.
// The redirect URI is the gateway's predicted URL (https://<app>.<environment defaultDomain>),
// known before the container app exists, so there is no dependency cycle.
extension microsoftGraphV1

@description('Immutable idempotency key of the app registration (a second `azd up` updates it in place).')
param appUniqueName string
param displayName string
param redirectUri string
@description('Application ID URI in the api://{tenantId}/{string} form (empty: none; some tenants allow only api://{appId}).')
param identifierUri string
@description('Object (principal) id of the gateway identity: the subject of the federated credential.')
param gatewayIdentityPrincipalId string
param appRoleAssignmentRequired bool
param serviceManagementReference string

var graphAppId = '00000003-0000-0000-c000-000000000000'
var graphUserRead = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  serviceManagementReference: empty(serviceManagementReference) ? null : serviceManagementReference
  identifierUris: empty(identifierUri) ? [] : [identifierUri]
  web: {
    redirectUris: [redirectUri]
    implicitGrantSettings: { enableIdTokenIssuance: false, enableAccessTokenIssuance: false }
  }
  api: { requestedAccessTokenVersion: 2 }
  // App role for MCPGATE_REQUIRED_ROLES=MCP.User: assign it to users or groups under
  // Enterprise applications → Users and groups; it reaches the gateway in the ID token's `roles`.
  appRoles: [
    {
      id: guid(appUniqueName, 'MCP.User')
      value: 'MCP.User'
      displayName: 'MCP user'
      description: 'May use the MCP tools behind this gateway.'
      allowedMemberTypes: ['User']
      isEnabled: true
    }
  ]
  // E-mail domain policy (MCPGATE_ALLOWED_EMAIL_DOMAINS) trusts `email` only with `xms_edov`.
  optionalClaims: {
    idToken: [
      { name: 'email', essential: false }
      { name: 'xms_edov', essential: false }
    ]
  }
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: [{ id: graphUserRead, type: 'Scope' }]
    }
  ]

  // Trust the gateway's managed identity (audience api://AzureADTokenExchange).
  resource gatewayCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/gateway-identity'
    description: 'mcpgate gateway managed identity'
    audiences: ['api://AzureADTokenExchange']
    issuer: '${environment().authentication.loginEndpoint}${subscription().tenantId}/v2.0'
    subject: gatewayIdentityPrincipalId
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  appRoleAssignmentRequired: appRoleAssignmentRequired
}

output appId string = app.appId
output servicePrincipalId string = servicePrincipal.id
