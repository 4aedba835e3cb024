// The Function App that runs the Go custom handler (`handler serve`), on a
// Flex Consumption or an Elastic Premium plan, with identity-based app
// settings only.
//
// App settings are written as the array variables named *Settings below, one
// { name, value } object per line pair. TestBicepSettingsMatchGateway
// (internal/deploy) parses them and checks them against what the gateway and
// the Functions host read: keep that shape when adding a setting.

@description('Function App name.')
param name string

@description('Hosting plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags put on every resource.')
param tags object

@description('FlexConsumption or ElasticPremium.')
param hostingPlan string

@description('Flex Consumption instance memory in MB.')
param instanceMemoryMB int

@description('Flex Consumption maximum instance count.')
param maximumInstanceCount int

@description('Elastic Premium SKU (EP1 to EP3).')
param premiumSku string

@description('Elastic Premium maximum instance count.')
param maximumElasticWorkerCount int

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Storage account for the host (AzureWebJobsStorage).')
param storageAccountName string

@description('URL of the deployment package blob container.')
param deploymentContainerUrl string

@description('Table service endpoint of the gateway tables.')
param tableServiceUri string

@description('Blob service endpoint of the job-bodies container (GatewayBlobs__blobServiceUri).')
param blobServiceUri string

@description('Fully qualified Service Bus namespace.')
param serviceBusNamespace string

@description('Application Insights connection string (no secret: local auth is disabled).')
param appInsightsConnectionString string

@description('Gateway config path inside the package.')
param gatewayConfigPath string

@description('Foundry / Azure OpenAI endpoint for the shipped config.')
param foundryEndpoint string

@description('Region of that endpoint.')
param foundryRegion string

@description('Resource id of the Foundry / Azure OpenAI account (app setting FOUNDRY_RESOURCE_ID); its region\'s metrics endpoint becomes FOUNDRY_METRICS_ENDPOINT.')
param foundryResourceId string

@description('Key Vault URI, or empty when there is no Key Vault.')
param keyVaultUri string

@description('Key Vault backed settings: objects { setting, secret }.')
param keyVaultSecretSettings array

@description('Subnet for outbound VNet integration (private variant), or empty for none.')
param subnetId string = ''

var isFlex = hostingPlan == 'FlexConsumption'

// Package blob for Elastic Premium (uploaded by make deploy).
var packageUrl = '${deploymentContainerUrl}/gateway.zip'

// Settings on every plan. Names ending in __tableServiceUri, __blobServiceUri,
// __fullyQualifiedNamespace and __clientId are the Functions identity-based
// connection convention; the gateway reads them the same way (config.go).
var gatewaySettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'GatewayTables__tableServiceUri'
    value: tableServiceUri
  }
  {
    name: 'GatewayTables__clientId'
    value: identityClientId
  }
  {
    name: 'GatewayTables__credential'
    value: 'managedidentity'
  }
  {
    name: 'GatewayBlobs__blobServiceUri'
    value: blobServiceUri
  }
  {
    name: 'GatewayBlobs__clientId'
    value: identityClientId
  }
  {
    name: 'GatewayBlobs__credential'
    value: 'managedidentity'
  }
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusNamespace
  }
  {
    name: 'ServiceBusConnection__clientId'
    value: identityClientId
  }
  {
    name: 'ServiceBusConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'GATEWAY_CONFIG'
    value: gatewayConfigPath
  }
  {
    name: 'FOUNDRY_ENDPOINT'
    value: foundryEndpoint
  }
  {
    name: 'FOUNDRY_REGION'
    value: foundryRegion
  }
  {
    name: 'FOUNDRY_RESOURCE_ID'
    value: foundryResourceId
  }
  {
    // Regional Azure Monitor metrics endpoint (azmetrics getBatch).
    name: 'FOUNDRY_METRICS_ENDPOINT'
    value: 'https://${foundryRegion}.metrics.monitor.azure.com'
  }
]

// Elastic Premium only (Flex Consumption rejects these: it takes the runtime
// from functionAppConfig). No WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: Azure
// Files needs a storage key, so the app runs from the package blob, read with
// the user-assigned identity.
var premiumSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: packageUrl
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID'
    value: identityId
  }
]

// Backend API keys from Key Vault, named by the deployment parameters.
var keyVaultSettings = [for s in (empty(keyVaultUri) ? [] : keyVaultSecretSettings): {
  name: s.setting
  value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${s.secret}/)'
}]

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}
var elasticSku = {
  name: premiumSku
  tier: 'ElasticPremium'
}
var flexPlanProperties = {
  reserved: true
}
var elasticPlanProperties = {
  reserved: true
  maximumElasticWorkerCount: maximumElasticWorkerCount
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? flexSku : elasticSku
  properties: isFlex ? flexPlanProperties : elasticPlanProperties
}

var flexSiteProperties = {
  serverFarmId: plan.id
  httpsOnly: true
  keyVaultReferenceIdentity: identityId
  functionAppConfig: {
    deployment: {
      storage: {
        type: 'blobContainer'
        value: deploymentContainerUrl
        authentication: {
          type: 'UserAssignedIdentity'
          userAssignedIdentityResourceId: identityId
        }
      }
    }
    scaleAndConcurrency: {
      maximumInstanceCount: maximumInstanceCount
      instanceMemoryMB: instanceMemoryMB
    }
    runtime: {
      name: 'custom'
      version: '1.0'
    }
  }
  // Flex Consumption takes few siteConfig properties; FTP is off through the
  // basic publishing credentials policy below.
  siteConfig: {
    minTlsVersion: '1.2'
    appSettings: concat(gatewaySettings, keyVaultSettings)
  }
}

// linuxFxVersion is empty for the custom handler stack on Linux (the
// Functions stack data gives no runtime image for it).
var elasticSiteProperties = {
  serverFarmId: plan.id
  httpsOnly: true
  keyVaultReferenceIdentity: identityId
  siteConfig: {
    linuxFxVersion: ''
    use32BitWorkerProcess: false
    minTlsVersion: '1.2'
    ftpsState: 'Disabled'
    http20Enabled: true
    appSettings: concat(gatewaySettings, premiumSettings, keyVaultSettings)
  }
}

// Private variant: outbound traffic (storage, Service Bus, Key Vault
// references, backends) goes through the integrated subnet, where the private
// endpoints and their DNS zones are. vnetRouteAllEnabled is the Elastic
// Premium switch for "all traffic, not only private ranges"; Flex Consumption
// is left at its default (see infra/README.md, private variant).
var vnetProperties = isFlex ? {
  virtualNetworkSubnetId: subnetId
} : {
  virtualNetworkSubnetId: subnetId
  vnetRouteAllEnabled: true
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: union(isFlex ? flexSiteProperties : elasticSiteProperties, empty(subnetId) ? {} : vnetProperties)
}

// Publishing uses Entra ID only (az functionapp deploy gets a token).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('Function App name.')
output name string = site.name

@description('Default host name, e.g. func-x.azurewebsites.net.')
output defaultHostName string = site.properties.defaultHostName
