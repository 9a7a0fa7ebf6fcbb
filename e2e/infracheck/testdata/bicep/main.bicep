// Broken on purpose: see TestCheckModules.
targetScope = 'subscription'

param environmentName string

module good 'mod.bicep' = {
  name: 'good'
  params: {
    required: environmentName
    optional: 'x'
    nested: {
      notAParam: 1
    }
  }
}

module wrong 'mod.bicep' = if (!empty(environmentName)) {
  name: 'wrong'
  params: {
    requried: environmentName
  }
  dependsOn: [good]
}

module missing 'does-not-exist.bicep' = {
  name: 'missing'
  params: {}
}

output URL string = good.outputs.url
output TYPO string = good.outputs.uri
output SAFE string = wrong!.outputs.?url ?? ''
