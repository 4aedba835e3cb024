// Multi-region: lets another region's gateway identity read and write the
// shared gateway tables in the primary region's Storage account (Storage
// Table Data Contributor on that account).

@description('Name of the Storage account holding the shared tables (in this module\'s resource group).')
param storageAccountName string

@description('Principal id of the other region\'s managed identity.')
param principalId string

// Built-in role: Storage Table Data Contributor.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageTableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
