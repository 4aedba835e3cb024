// Service Bus namespace (Entra ID only: SAS keys disabled) with the gateway's
// low-priority queue, and the send + receive roles for the managed identity,
// scoped to that queue.

@description('Namespace name.')
param name string

@description('Azure region.')
param location string

@description('Tags put on every resource.')
param tags object

@description('Standard or Premium.')
param skuName string

@description('Queue name.')
param queueName string

@description('Peek-lock duration (ISO 8601).')
param lockDuration string

@description('Deliveries before dead-lettering.')
param maxDeliveryCount int

@description('Dead-letter expired messages.')
param deadLetteringOnMessageExpiration bool

@description('Drop duplicates by MessageId.')
param requiresDuplicateDetection bool

@description('Duplicate detection window (ISO 8601).')
param duplicateDetectionHistoryTimeWindow string

@description('Message time to live (ISO 8601).')
param defaultMessageTimeToLive string

@description('Principal id of the managed identity that sends and receives.')
param principalId string

@description('Enabled, or Disabled for the private variant (Premium only: reached through a private endpoint).')
param publicNetworkAccess string = 'Enabled'

// Built-in roles.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

var standardSku = {
  name: 'Standard'
  tier: 'Standard'
}
var premiumSku = {
  name: 'Premium'
  tier: 'Premium'
  capacity: 1
}

resource sbNamespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: skuName == 'Premium' ? premiumSku : standardSku
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: publicNetworkAccess
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: sbNamespace
  name: queueName
  properties: {
    lockDuration: lockDuration
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: deadLetteringOnMessageExpiration
    requiresDuplicateDetection: requiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: duplicateDetectionHistoryTimeWindow
    defaultMessageTimeToLive: defaultMessageTimeToLive
    requiresSession: false
    enablePartitioning: false
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, serviceBusDataReceiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Namespace name.')
output name string = sbNamespace.name

@description('Namespace resource id.')
output id string = sbNamespace.id

// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (another
// suffix in sovereign clouds); keep only the host.
@description('Fully qualified namespace, e.g. sb-x.servicebus.windows.net.')
output fullyQualifiedNamespace string = split(split(sbNamespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
