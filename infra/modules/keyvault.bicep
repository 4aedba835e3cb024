// Optional Key Vault for backend API keys that managed identity cannot replace
// (a backend outside Entra ID, or a resource with key auth only). RBAC
// authorization; the managed identity may only read secrets. Secrets are put
// in out of band (az keyvault secret set), never through this template.

@description('Key Vault name (3 to 24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags put on every resource.')
param tags object

@description('Principal id of the managed identity that resolves the Key Vault references.')
param principalId string

@description('Enabled, or Disabled for the private variant (reached through a private endpoint only).')
param publicNetworkAccess string = 'Enabled'

// Built-in role: Key Vault Secrets User.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Vault URI, e.g. https://kv-x.vault.azure.net/.')
output uri string = vault.properties.vaultUri

@description('Vault name.')
output name string = vault.name

@description('Vault resource id.')
output id string = vault.id
