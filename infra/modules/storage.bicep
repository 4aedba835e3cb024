// Storage account for the Functions host (blob leases, keys), the deployment
// package container, the gateway's tables and the container of large job
// bodies (the claim check: see jobBodiesContainerName). Shared keys are disabled: every
// caller uses Entra ID.

@description('Storage account name (3 to 24 lowercase letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags put on every resource.')
param tags object

@description('Replication SKU.')
param skuName string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Principal id of the managed identity of the Function App.')
param principalId string

@description('Blob container of the request bodies of large jobs. The gateway stores a body above jobs.claimCheckBytes (192 KiB) there and the Service Bus message carries only a reference, so the Standard tier (256 KB messages) carries requests up to maxBodyBytes. Must match jobs.bodyContainer in the gateway config.')
param jobBodiesContainerName string

@description('Days after which a job body blob is deleted even if the gateway did not delete it (it deletes each one when its job finishes). Longer than the queue message time to live, so a queued job never loses its body.')
@minValue(1)
param jobBodiesRetentionDays int

@description('Blob container of the Batch API files (uploads, output and error files). Must match batch.fileContainer in the gateway config (default batch-files).')
param batchFilesContainerName string = 'batch-files'

@description('Blob container of the audit trail (issue #19): append blobs of prompts and completions, one set per day and team, for the teams and models that opt in. Must match audit.container in the gateway config.')
param auditContainerName string

@description('Days an audit blob is kept after its last append; the lifecycle rule deletes it then (the compliance retention).')
@minValue(1)
param auditRetentionDays int

@description('Optional object id of the principal that gets Storage Table Data Contributor on the account: the deployer, so that the first admin key can be created from a laptop with az login (handler keys create). Empty: none.')
param tableAdminPrincipalId string

@description('Optional principal that uploads the package (gets Storage Blob Data Contributor on the container).')
param deployerPrincipalId string

@description('Optional object id of a finance group (or user, or service principal) that gets Storage Table Data Reader on the usage tables only (UsageDaily, UsageEvents), for Excel / Power BI / Power Query. Empty: no assignment.')
param financeReaderPrincipalId string = ''

@description('Principal type of financeReaderPrincipalId: Group, User or ServicePrincipal.')
@allowed([
  'Group'
  'User'
  'ServicePrincipal'
])
param financeReaderPrincipalType string = 'Group'

@description('store.tablePrefix of the gateway config (letters and digits; empty by default), so the usage tables created here are the ones the gateway writes.')
param tablePrefix string = ''

@description('Enabled, or Disabled for the private variant (reached through private endpoints only).')
param publicNetworkAccess string = 'Enabled'

// Built-in roles.
// Storage Blob Data Owner: the host needs read, write and container creation
// on blobs (timer locks, keys) and Flex Consumption reads the package with it.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Table Data Contributor: the gateway tables, and the host's
// diagnostic events.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Storage Blob Data Contributor: the deployer uploads the package; the
// gateway reads, writes and deletes job bodies.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Table Data Reader: finance reads the usage tables. A data role
// can be scoped to one table (.../tableServices/default/tables/<name>; see
// https://learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access),
// so the reader sees no other table (keys, counters, jobs).
var storageTableDataReader = '76199698-9eea-4c19-bc75-cec21354c6b6'
// The finance tables (internal/ledger); the gateway creates them when
// missing, creating them here too lets the role be assigned before the
// first request.
var usageTables = [
  '${tablePrefix}UsageDaily'
  '${tablePrefix}UsageEvents'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource jobBodiesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: jobBodiesContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource batchFilesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: batchFilesContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

// A body whose delete failed (storage unreachable when its job finished) is
// removed by this rule; the gateway itself deletes each body when its job
// is completed, failed, cancelled or dead-lettered.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-job-bodies'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${jobBodiesContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: jobBodiesRetentionDays
                }
              }
            }
          }
        }
        // Audit retention: an audit blob (one day of one team) is deleted
        // auditRetentionDays after its last append. Append blobs support
        // only the delete action of lifecycle management
        // (https://learn.microsoft.com/azure/storage/blobs/lifecycle-management-overview).
        {
          name: 'expire-audit'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'appendBlob'
              ]
              prefixMatch: [
                '${auditContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: auditRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// The gateway's own role on the job bodies, scoped to their container. The
// host's Storage Blob Data Owner on the account covers it today; this keeps
// the claim check working if the host role is ever narrowed to its own
// containers.
resource jobBodiesContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobBodiesContainer.id, principalId, storageBlobDataContributor)
  scope: jobBodiesContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The gateway's role on the Batch API files, scoped to their container (the
// gateway deletes each file at its expires_at).
resource batchFilesContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(batchFilesContainer.id, principalId, storageBlobDataContributor)
  scope: batchFilesContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The gateway appends the audit trail; scoped to its container like the
// job bodies.
resource auditContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditContainer.id, principalId, storageBlobDataContributor)
  scope: auditContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The operator's table access: `handler keys create` from a laptop writes
// the first admin key straight into the Keys table with the operator's
// az login (DefaultAzureCredential). Without a data role the call fails
// with 403 AuthorizationPermissionMismatch, because shared keys are
// disabled and Owner or Contributor on the account grant no data access.
resource tableAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(tableAdminPrincipalId)) {
  name: guid(account.id, tableAdminPrincipalId, storageTableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: tableAdminPrincipalId
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
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

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource usageTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for t in usageTables: {
  parent: tableService
  name: t
}]

resource financeReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in usageTables: if (!empty(financeReaderPrincipalId)) {
  name: guid(account.id, t, financeReaderPrincipalId, storageTableDataReader)
  scope: usageTable[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReader)
    principalId: financeReaderPrincipalId
    principalType: financeReaderPrincipalType
  }
}]

resource deployerUpload 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(deploymentContainer.id, deployerPrincipalId, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: deployerPrincipalId
  }
}

@description('Storage account name.')
output name string = account.name

@description('Storage account resource id.')
output id string = account.id

@description('Table service endpoint, e.g. https://x.table.core.windows.net/.')
output tableEndpoint string = account.properties.primaryEndpoints.table

@description('Blob service endpoint, e.g. https://x.blob.core.windows.net/.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('URL of the deployment package container (no trailing slash).')
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
