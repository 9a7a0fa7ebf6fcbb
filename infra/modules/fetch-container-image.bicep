// azd's keep-the-image pattern: on re-provision (SERVICE_GATEWAY_RESOURCE_EXISTS=true) read the
// image the running gateway uses, so `azd provision` does not reset it to the placeholder.
param exists bool
param name string

resource existingApp 'Microsoft.App/containerApps@2025-01-01' existing = if (exists) {
  name: name
}

output containers array = exists ? existingApp!.properties.template.containers : []
