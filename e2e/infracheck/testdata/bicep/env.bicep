// Broken on purpose: MCPGATE_REDIS_URL is empty, MCPGATE_KEYVAULT_URL is missing (misspelt),
// FUNCTIONS_WORKER_RUNTIME must not be set on Flex.
param redisHost string

var env = [
  { name: 'MCPGATE_PUBLIC_URL', value: 'https://${redisHost}' } // comment with { name: 'IGNORED', value: 'x' }
  { name: 'MCPGATE_REDIS_URL', value: '' }
  { name: 'MCPGATE_KEYVALT_URL', value: 'https://kv.vault.azure.net/' }
  { name: 'MCPGATE_REDIS_ENTRA', value: 'true' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
]

output env array = env
