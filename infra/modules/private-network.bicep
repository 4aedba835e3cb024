// Private variant (main.bicep privateNetworking = true): a virtual network
// with a subnet for the Function App's outbound VNet integration and one for
// private endpoints; a private endpoint with its private DNS zone for every
// service the gateway calls (Storage table, blob and queue, Service Bus, Key
// Vault when there is one, each Foundry / Azure OpenAI account, and the
// shared tables account of a multi-region deployment). main.bicep turns
// public network access off on the resources it owns.
//
// Zone names and sub-resources (group ids) are the ones Azure documents in
// "Azure Private Endpoint private DNS zone values"
// (https://learn.microsoft.com/azure/private-link/private-endpoint-dns):
//   Storage table/blob/queue  privatelink.{table,blob,queue}.core.windows.net
//   Service Bus namespace     privatelink.servicebus.windows.net
//   Key Vault vault           privatelink.vaultcore.azure.net
//   Azure AI services account privatelink.cognitiveservices.azure.com,
//                             privatelink.openai.azure.com,
//                             privatelink.services.ai.azure.com
// TestBicepPrivateVariant (internal/deploy) checks this file against that
// table and against the resources main.bicep makes private.

@description('Short base name used in resource names.')
param name string

@description('Azure region of the virtual network and the private endpoints.')
param location string

@description('Tags put on every resource.')
param tags object

@description('FlexConsumption or ElasticPremium: picks the delegation of the integration subnet.')
param hostingPlan string

@description('Address space of the virtual network; the integration subnet takes the first /24, the endpoint subnet the second.')
param addressPrefix string

@description('Resource id of the stack Storage account (table, blob and queue endpoints).')
param storageAccountId string

@description('Resource id of the Service Bus namespace (Premium: private endpoints need it).')
param serviceBusNamespaceId string

@description('Resource id of the Key Vault, or empty when the stack has none.')
param keyVaultId string

@description('Resource ids of the Foundry / Azure OpenAI accounts the gateway calls.')
param backendResourceIds array

@description('Resource id of the Storage account holding the shared gateway tables of a multi-region deployment, or empty.')
param sharedTableStorageAccountId string

var storageSuffix = environment().suffixes.storage
var tableZone = 'privatelink.table.${storageSuffix}'
var blobZone = 'privatelink.blob.${storageSuffix}'
var queueZone = 'privatelink.queue.${storageSuffix}'
var serviceBusZone = 'privatelink.servicebus.windows.net'
var keyVaultZone = 'privatelink.vaultcore.azure.net'
var cognitiveZone = 'privatelink.cognitiveservices.azure.com'
var openAIZone = 'privatelink.openai.azure.com'
var aiServicesZone = 'privatelink.services.ai.azure.com'

var zoneNames = concat(
  [
    tableZone
    blobZone
    queueZone
    serviceBusZone
  ],
  empty(keyVaultId) ? [] : [keyVaultZone],
  empty(backendResourceIds) ? [] : [cognitiveZone, openAIZone, aiServicesZone]
)

// The DNS zone group entry of each zone (an endpoint's A records go there).
var tableZoneConfig = {
  name: 'table'
  properties: {
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', tableZone)
  }
}
var blobZoneConfig = {
  name: 'blob'
  properties: {
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', blobZone)
  }
}
var queueZoneConfig = {
  name: 'queue'
  properties: {
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', queueZone)
  }
}
var serviceBusZoneConfig = {
  name: 'servicebus'
  properties: {
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', serviceBusZone)
  }
}
var keyVaultZoneConfig = {
  name: 'vault'
  properties: {
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', keyVaultZone)
  }
}
var accountZoneConfigs = [
  {
    name: 'cognitiveservices'
    properties: {
      privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', cognitiveZone)
    }
  }
  {
    name: 'openai'
    properties: {
      privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', openAIZone)
    }
  }
  {
    name: 'services-ai'
    properties: {
      privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', aiServicesZone)
    }
  }
]

// One entry per private endpoint: the target, its sub-resource (group id)
// and the zones its DNS records go to.
var storageEndpoints = [
  {
    name: 'table'
    resourceId: storageAccountId
    groupId: 'table'
    zones: [tableZoneConfig]
  }
  {
    name: 'blob'
    resourceId: storageAccountId
    groupId: 'blob'
    zones: [blobZoneConfig]
  }
  {
    name: 'queue'
    resourceId: storageAccountId
    groupId: 'queue'
    zones: [queueZoneConfig]
  }
  {
    name: 'servicebus'
    resourceId: serviceBusNamespaceId
    groupId: 'namespace'
    zones: [serviceBusZoneConfig]
  }
]
var keyVaultEndpoints = empty(keyVaultId) ? [] : [
  {
    name: 'vault'
    resourceId: keyVaultId
    groupId: 'vault'
    zones: [keyVaultZoneConfig]
  }
]
var sharedTableEndpoints = empty(sharedTableStorageAccountId) ? [] : [
  {
    name: 'shared-table'
    resourceId: sharedTableStorageAccountId
    groupId: 'table'
    zones: [tableZoneConfig]
  }
]
var backendEndpoints = [for (id, i) in backendResourceIds: {
  name: 'ai-${i}'
  resourceId: id
  groupId: 'account'
  zones: accountZoneConfigs
}]
var endpoints = concat(storageEndpoints, keyVaultEndpoints, sharedTableEndpoints, backendEndpoints)

var isFlex = hostingPlan == 'FlexConsumption'

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        // Outbound VNet integration. Flex Consumption needs the
        // Microsoft.App/environments delegation, Elastic Premium
        // Microsoft.Web/serverFarms; one subnet per app.
        name: 'apps'
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 0)
          delegations: [
            {
              name: 'functions'
              properties: {
                serviceName: isFlex ? 'Microsoft.App/environments' : 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 1)
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for z in zoneNames: {
  name: z
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (z, i) in zoneNames: {
  parent: zones[i]
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-01-01' = [for e in endpoints: {
  name: 'pe-${name}-${e.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: vnet.properties.subnets[1].id
    }
    privateLinkServiceConnections: [
      {
        name: e.name
        properties: {
          privateLinkServiceId: e.resourceId
          groupIds: [
            e.groupId
          ]
        }
      }
    ]
  }
}]

// The zone group writes each endpoint's A records into its zones.
resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [for (e, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: e.zones
  }
  dependsOn: [
    zones
  ]
}]

@description('Resource id of the subnet the Function App integrates with.')
output appSubnetId string = vnet.properties.subnets[0].id

@description('Resource id of the virtual network.')
output vnetId string = vnet.id
