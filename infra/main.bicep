// Foundry Gateway on Azure Functions: the whole stack in one resource group.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json
//
// Creates a Linux Function App (Flex Consumption by default, Elastic Premium on
// request) running the Go custom handler, a Storage account (host blobs, the
// deployment package, the gateway's tables), a Service Bus namespace with the
// low-priority queue, Application Insights on a Log Analytics workspace, one
// user-assigned managed identity with least-privilege role assignments, and
// optionally a Key Vault. Every connection is identity-based: no app setting,
// parameter or output holds a key or a connection string with a secret.
// infra/README.md documents the parameters, the outputs and the deploy steps.

targetScope = 'resourceGroup'

@description('Short base name for every resource: 3 to 12 lowercase letters or digits. Names are this plus a hash of the resource group id, so one name can be reused across resource groups.')
@minLength(3)
@maxLength(12)
param name string = 'fgw'

@description('Azure region for every resource. Default: the region of the resource group. Flex Consumption is not offered in every region (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Tags put on every resource.')
param tags object = {}

@description('Hosting plan of the Function App. FlexConsumption (default): plan FC1, scale to zero, deployment package in a blob container read with the managed identity. ElasticPremium: plan EP1 to EP3 (see premiumSku), always-ready instances, package run from a blob URL with the managed identity (no Azure Files share, so no storage key).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex Consumption only: memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption only: the most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Elastic Premium only: the plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string = 'EP1'

@description('Elastic Premium only: the most instances the plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Replication of the Storage account that holds the host blobs, the deployment package and the gateway tables (Keys, Counters, UsageEvents, UsageDaily, Jobs, BackendState).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_LRS'

// Message size: Service Bus Standard accepts messages up to 256 KB, Premium
// up to 100 MB (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas).
// Job requests can be up to maxBodyBytes (16 MiB), so the gateway never puts
// a body above jobs.claimCheckBytes (192 KiB) in a message: it stores it in
// the job-bodies blob container and sends a reference (claim check). That is
// why Standard works for every request size.
@description('Service Bus tier. Standard is enough: messages are limited to 256 KB there, and job bodies above 192 KiB travel through the job-bodies blob container (claim check). Premium allows messages up to 100 MB and private networking.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Low-priority queue: how long a received message stays locked to its receiver (ISO 8601 duration, at most PT5M).')
param queueLockDuration string = 'PT1M'

@description('Low-priority queue: deliveries after which a message is dead-lettered (MaxDeliveryCountExceeded).')
@minValue(1)
@maxValue(2000)
param queueMaxDeliveryCount int = 10

@description('Low-priority queue: move expired messages to the dead-letter queue instead of dropping them.')
param queueDeadLetteringOnMessageExpiration bool = true

@description('Low-priority queue: drop a message whose MessageId was already sent within queueDuplicateDetectionHistoryTimeWindow (the gateway uses the job id). Can only be set when the queue is created.')
param queueRequiresDuplicateDetection bool = true

@description('Low-priority queue: duplicate detection window (ISO 8601 duration, PT20S to P7D). Used only when queueRequiresDuplicateDetection is true.')
param queueDuplicateDetectionHistoryTimeWindow string = 'PT10M'

@description('Low-priority queue: time to live of a message that is not received (ISO 8601 duration).')
param queueDefaultMessageTimeToLive string = 'P14D'

@description('Days the Log Analytics workspace keeps logs and Application Insights telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Turn off instrumentation-key ingestion on Application Insights (and key access on the workspace), so only Entra ID (the managed identity, role Monitoring Metrics Publisher) can send telemetry. The connection string then holds no usable secret.')
param appInsightsDisableLocalAuth bool = true

@description('Endpoint of the Foundry / Azure OpenAI resource the shipped gateway config (infra/config/azure.yaml) sends requests to, e.g. https://my-foundry.openai.azure.com. Set as app setting FOUNDRY_ENDPOINT.')
param foundryEndpoint string

@description('Azure region of that resource, e.g. swedencentral. Set as app setting FOUNDRY_REGION and used for data residency rules.')
param foundryRegion string

@description('Resource id of that account (/subscriptions/…/providers/Microsoft.CognitiveServices/accounts/<name>). Set as app setting FOUNDRY_RESOURCE_ID: the drain reads its AzureOpenAIProvisionedManagedUtilizationV2 metric (backends[].resourceId in infra/config/azure.yaml). The identity gets Cognitive Services OpenAI User and Monitoring Reader on it.')
param foundryResourceId string

@description('Resource ids of the Foundry / Azure OpenAI accounts (Microsoft.CognitiveServices/accounts, any subscription or resource group) the gateway calls with its managed identity. Each gets a Cognitive Services OpenAI User role assignment for the identity. The deploying principal needs permission to assign roles there.')
param backendResourceIds array = []

@description('Create a Key Vault (RBAC authorization, purge protection) for backend API keys that cannot be replaced by managed identity. The identity gets Key Vault Secrets User on it. Put the secrets in with az keyvault secret set; never in parameters.')
param deployKeyVault bool = false

@description('App settings resolved from the Key Vault, one per backend API key: objects { setting: NAME, secret: SECRET_NAME }. Each becomes NAME=@Microsoft.KeyVault(SecretUri=...) for a backend whose gateway config says apiKeyEnv: NAME. Ignored unless deployKeyVault is true.')
param keyVaultSecretSettings array = []

@description('Gateway config file inside the package, relative to the app root. Set as app setting GATEWAY_CONFIG. make package ships infra/config/azure.yaml as gateway.yaml.')
param gatewayConfigPath string = 'gateway.yaml'

@description('Optional object id of the user or service principal that runs make deploy. It gets Storage Blob Data Contributor on the deployment container, which Elastic Premium needs to upload the package (shared keys are disabled). Leave empty on Flex Consumption.')
param deployerPrincipalId string = ''

@description('Optional object id of the finance group that reads usage from Table Storage (Excel, Power BI). It gets Storage Table Data Reader on the UsageDaily and UsageEvents tables only. Empty: no assignment.')
param financeReaderPrincipalId string = ''

@description('Principal type of financeReaderPrincipalId: Group (default), User or ServicePrincipal.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param financeReaderPrincipalType string = 'Group'

@description('Give the principal that runs the deployment (deployer(), or deployerPrincipalId when set) Storage Table Data Contributor on the storage account, so the first admin key can be created from a laptop with az login only (handler keys create; README "First hour in Azure"). Set false when the deploying principal is a pipeline that must not hold data access; then grant the role to an operator, or use an Entra ID identity rule with admin: true.')
param grantDeployerTableAccess bool = true

@description('Days after which a leftover job body blob is deleted (the gateway deletes each one when its job finishes). Keep it longer than queueDefaultMessageTimeToLive.')
@minValue(1)
param jobBodiesRetentionDays int = 30

@description('Days an audit blob (prompts and completions of one team and day, for the teams that opt in with audit.teams) is kept after its last append; then the lifecycle rule deletes it. Default 365.')
@minValue(1)
param auditRetentionDays int = 365

@description('Private variant: the Function App integrates with a new virtual network and reaches Storage, Service Bus (forced to Premium), the Key Vault and the backend accounts through private endpoints with private DNS zones; public network access is turned off on the Storage account, the Service Bus namespace and the Key Vault. The backend accounts belong to their owners: turn their public access off there (infra/README.md). Default false.')
param privateNetworking bool = false

@description('Private variant only: address space of the virtual network (at least a /23: one /24 for the app, one for the endpoints).')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Multi-region (infra/multiregion.bicep): table endpoint of the shared gateway tables in the primary region, used instead of this stack\'s own. Empty: this stack\'s Storage account.')
param sharedTableServiceUri string = ''

@description('Multi-region with privateNetworking: resource id of the Storage account behind sharedTableServiceUri, which gets a private endpoint in this stack\'s network. Empty: none.')
param sharedTableStorageAccountId string = ''

var suffix = uniqueString(resourceGroup().id, name)
var publicAccess = privateNetworking ? 'Disabled' : 'Enabled'
var storageAccountName = take(toLower('st${name}${suffix}'), 24)
var deploymentContainerName = 'app-package'
// The queue name must match queue.name in infra/config/azure.yaml
// (TestBicepSettingsMatchGateway checks it).
var queueName = 'lowpri'
// The container of large job bodies must match jobs.bodyContainer in
// infra/config/azure.yaml (its default, job-bodies; TestBicepSettingsMatchGateway).
var jobBodiesContainerName = 'job-bodies'
// audit.container of the gateway config (its default).
var auditContainerName = 'audit'
// deployer() is the principal running the deployment (Bicep CLI from late
// 2024, Azure/bicep#15340).
var tableAdminPrincipalId = grantDeployerTableAccess ? (empty(deployerPrincipalId) ? deployer().objectId : deployerPrincipalId) : ''

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}-${suffix}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: 'log-${name}-${suffix}'
    appInsightsName: 'appi-${name}-${suffix}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
    disableLocalAuth: appInsightsDisableLocalAuth
    principalId: identity.properties.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    principalId: identity.properties.principalId
    deployerPrincipalId: deployerPrincipalId
    financeReaderPrincipalId: financeReaderPrincipalId
    financeReaderPrincipalType: financeReaderPrincipalType
    jobBodiesContainerName: jobBodiesContainerName
    jobBodiesRetentionDays: jobBodiesRetentionDays
    auditContainerName: auditContainerName
    auditRetentionDays: auditRetentionDays
    tableAdminPrincipalId: tableAdminPrincipalId
    publicNetworkAccess: publicAccess
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: 'sb-${name}-${suffix}'
    location: location
    tags: tags
    // Private endpoints need the Premium tier.
    skuName: privateNetworking ? 'Premium' : serviceBusSku
    queueName: queueName
    lockDuration: queueLockDuration
    maxDeliveryCount: queueMaxDeliveryCount
    deadLetteringOnMessageExpiration: queueDeadLetteringOnMessageExpiration
    requiresDuplicateDetection: queueRequiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: queueDuplicateDetectionHistoryTimeWindow
    defaultMessageTimeToLive: queueDefaultMessageTimeToLive
    principalId: identity.properties.principalId
    publicNetworkAccess: publicAccess
  }
}

module keyVault 'modules/keyvault.bicep' = if (deployKeyVault) {
  name: 'keyvault'
  params: {
    name: take('kv-${name}-${suffix}', 24)
    location: location
    tags: tags
    principalId: identity.properties.principalId
    publicNetworkAccess: publicAccess
  }
}

// Private variant: network, private endpoints and DNS zones
// (modules/private-network.bicep).
module network 'modules/private-network.bicep' = if (privateNetworking) {
  name: 'private-network'
  params: {
    name: '${name}-${suffix}'
    location: location
    tags: tags
    hostingPlan: hostingPlan
    addressPrefix: vnetAddressPrefix
    storageAccountId: storage.outputs.id
    serviceBusNamespaceId: serviceBus.outputs.id
    keyVaultId: deployKeyVault ? keyVault.outputs.id : ''
    backendResourceIds: union(backendResourceIds, [foundryResourceId])
    sharedTableStorageAccountId: sharedTableStorageAccountId
  }
}

// One role assignment per backend account, in the account's own subscription
// and resource group.
module backendRoles 'modules/backend-role.bicep' = [for (id, i) in union(backendResourceIds, [foundryResourceId]): {
  name: take('backend-openai-user-${i}-${uniqueString(id)}', 64)
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    accountName: last(split(id, '/'))
    principalId: identity.properties.principalId
  }
}]

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-${name}-${suffix}'
    planName: 'plan-${name}-${suffix}'
    location: location
    tags: tags
    hostingPlan: hostingPlan
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    premiumSku: premiumSku
    maximumElasticWorkerCount: maximumElasticWorkerCount
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    tableServiceUri: empty(sharedTableServiceUri) ? storage.outputs.tableEndpoint : sharedTableServiceUri
    blobServiceUri: storage.outputs.blobEndpoint
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    appInsightsConnectionString: monitoring.outputs.connectionString
    gatewayConfigPath: gatewayConfigPath
    foundryEndpoint: foundryEndpoint
    foundryRegion: foundryRegion
    foundryResourceId: foundryResourceId
    keyVaultUri: deployKeyVault ? keyVault.outputs.uri : ''
    keyVaultSecretSettings: keyVaultSecretSettings
    subnetId: privateNetworking ? network.outputs.appSubnetId : ''
  }
}

@description('Base URL of the gateway: point OpenAI SDKs at <gatewayUrl>/openai/v1.')
output gatewayUrl string = 'https://${functionApp.outputs.defaultHostName}'

@description('Name of the Function App (az functionapp deploy --name).')
output functionAppName string = functionApp.outputs.name

@description('Hosting plan the app runs on; make deploy picks the package upload from it.')
output hostingPlan string = hostingPlan

@description('Client id of the user-assigned managed identity the gateway and the host use.')
output identityClientId string = identity.properties.clientId

@description('Principal (object) id of that identity, for extra role assignments.')
output identityPrincipalId string = identity.properties.principalId

@description('Table service endpoint of the gateway tables (finance reads UsageDaily here).')
output storageTableEndpoint string = storage.outputs.tableEndpoint

@description('Blob container of large job bodies (claim check).')
output jobBodiesContainerName string = jobBodiesContainerName

@description('Storage account name (host storage, deployment package, gateway tables, job bodies).')
output storageAccountName string = storage.outputs.name

@description('Blob container that holds the deployment package.')
output deploymentContainerName string = deploymentContainerName

@description('Service Bus namespace name.')
output serviceBusNamespace string = serviceBus.outputs.name

@description('Fully qualified Service Bus namespace, e.g. sb-x.servicebus.windows.net.')
output serviceBusFullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace

@description('Name of the low-priority queue.')
output serviceBusQueueName string = queueName

@description('Application Insights resource name.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Key Vault name, empty unless deployKeyVault.')
output keyVaultName string = deployKeyVault ? keyVault.outputs.name : ''
