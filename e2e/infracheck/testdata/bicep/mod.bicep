param required string
param optional string = 'default'
param nested object = {}

output url string = 'https://${required}'
