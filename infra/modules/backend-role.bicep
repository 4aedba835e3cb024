// Cognitive Services OpenAI User and Monitoring Reader for the gateway
// identity on one existing Foundry / Azure OpenAI account. Deployed with scope set to the account's own
// resource group (main.bicep: scope: resourceGroup(subscription, group)).

@description('Name of the Microsoft.CognitiveServices/accounts resource in this resource group.')
param accountName string

@description('Principal id of the gateway managed identity.')
param principalId string

// Built-in role: Cognitive Services OpenAI User (inference calls, read
// deployments; no keys, no management).
var cognitiveServicesOpenAIUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource openAIUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, cognitiveServicesOpenAIUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Built-in role: Monitoring Reader, so the drain can read the account's
// AzureOpenAIProvisionedManagedUtilizationV2 metric (metrics:getBatch)
// with the same identity (jobs.signals.metrics; issue 14).
var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'

resource metricsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, monitoringReader)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
