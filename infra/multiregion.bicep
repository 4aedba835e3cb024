// Foundry Gateway in more than one region, behind Azure Front Door.
//
//   az deployment sub create -l <first region> -f infra/multiregion.bicep -p @infra/multiregion.parameters.json
//
// One resource group and one whole stack (main.bicep) per entry of regions,
// each pointed at its own region's Foundry / Azure OpenAI endpoint, so every
// region serves from its own backends; Azure Front Door (modules/frontdoor.bicep)
// sends callers to a healthy region by priority or latency, probing
// GET /readyz on each gateway.
//
// Shared across regions: the gateway tables (keys, usage ledger, limit
// counters, jobs, response affinity) live in the first region's Storage
// account; the other regions' gateways use it (sharedTableServiceUri) with
// their own identity, granted Storage Table Data Contributor there. Per
// region: the Function App, its host storage, the Service Bus queue, the Key
// Vault, Application Insights, and all in-memory state (circuit breakers,
// cooling, latency averages). infra/README.md, "More than one region",
// explains the consequences for limits.

targetScope = 'subscription'

@description('Short base name for every resource: 3 to 12 lowercase letters or digits.')
@minLength(3)
@maxLength(12)
param name string = 'fgw'

@description('One object per region, the first holding the shared tables: { location, foundryEndpoint, foundryRegion, foundryResourceId, backendResourceIds (optional array) }. location is where the stack runs; foundryEndpoint, foundryRegion and foundryResourceId are that region\'s own backend (FOUNDRY_ENDPOINT / FOUNDRY_REGION / FOUNDRY_RESOURCE_ID of its gateway).')
@minLength(1)
param regions array

@description('How Front Door picks a region: Priority (the first healthy one in the regions order) or Latency (the nearest healthy ones).')
@allowed([
  'Priority'
  'Latency'
])
param frontDoorRouting string = 'Priority'

@description('Deploy every regional stack in its private variant (main.bicep privateNetworking); the other regions then reach the shared tables through a private endpoint of their own.')
param privateNetworking bool = false

@description('Hosting plan of every regional Function App (see main.bicep).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Replication of every regional Storage account; the first region\'s holds the shared tables, so zone- and geo-redundant storage is the default.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_GZRS'

@description('Tags put on every resource group and resource.')
param tags object = {}

var primary = regions[0]
var secondaries = skip(regions, 1)

resource primaryGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${name}-${primary.location}'
  location: primary.location
  tags: tags
}

resource secondaryGroups 'Microsoft.Resources/resourceGroups@2024-03-01' = [for r in secondaries: {
  name: 'rg-${name}-${r.location}'
  location: r.location
  tags: tags
}]

module primaryStack 'main.bicep' = {
  name: 'stack-${primary.location}'
  scope: primaryGroup
  params: {
    name: name
    location: primary.location
    tags: tags
    hostingPlan: hostingPlan
    storageSku: storageSku
    foundryEndpoint: primary.foundryEndpoint
    foundryRegion: primary.foundryRegion
    foundryResourceId: primary.foundryResourceId
    backendResourceIds: primary.?backendResourceIds ?? []
    privateNetworking: privateNetworking
    vnetAddressPrefix: '10.40.0.0/16'
  }
}

module secondaryStacks 'main.bicep' = [for (r, i) in secondaries: {
  name: 'stack-${r.location}'
  scope: secondaryGroups[i]
  params: {
    name: name
    location: r.location
    tags: tags
    hostingPlan: hostingPlan
    storageSku: storageSku
    foundryEndpoint: r.foundryEndpoint
    foundryRegion: r.foundryRegion
    foundryResourceId: r.foundryResourceId
    backendResourceIds: r.?backendResourceIds ?? []
    privateNetworking: privateNetworking
    // Distinct address spaces, so the networks can be peered later.
    vnetAddressPrefix: '10.${41 + i}.0.0/16'
    sharedTableServiceUri: primaryStack.outputs.storageTableEndpoint
    sharedTableStorageAccountId: privateNetworking ? resourceId(subscription().subscriptionId, primaryGroup.name, 'Microsoft.Storage/storageAccounts', primaryStack.outputs.storageAccountName) : ''
  }
}]

// The other regions' identities may use the shared tables.
module sharedTableRoles 'modules/table-role.bicep' = [for (r, i) in secondaries: {
  name: 'shared-tables-${r.location}'
  scope: primaryGroup
  params: {
    storageAccountName: primaryStack.outputs.storageAccountName
    principalId: secondaryStacks[i].outputs.identityPrincipalId
  }
}]

module frontDoor 'modules/frontdoor.bicep' = {
  name: 'frontdoor'
  scope: primaryGroup
  params: {
    name: '${name}-${uniqueString(subscription().id, name)}'
    tags: tags
    routing: frontDoorRouting
    primaryHostName: replace(primaryStack.outputs.gatewayUrl, 'https://', '')
    secondaryHostNames: [for (r, i) in secondaries: replace(secondaryStacks[i].outputs.gatewayUrl, 'https://', '')]
  }
}

@description('The one URL callers use: point OpenAI SDKs at <gatewayUrl>/openai/v1.')
output gatewayUrl string = 'https://${frontDoor.outputs.hostName}'

@description('Front Door id: the X-Azure-FDID header value, to restrict the regional Function Apps to this profile.')
output frontDoorId string = frontDoor.outputs.frontDoorId

@description('The first region\'s own gateway URL (it holds the shared tables).')
output primaryGatewayUrl string = primaryStack.outputs.gatewayUrl

@description('The other regions\' own gateway URLs, in regions order.')
output secondaryGatewayUrls array = [for (r, i) in secondaries: secondaryStacks[i].outputs.gatewayUrl]
