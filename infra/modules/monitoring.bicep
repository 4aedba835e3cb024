// Log Analytics workspace + workspace-based Application Insights, and the
// Monitoring Metrics Publisher role that lets the managed identity send
// telemetry when instrumentation-key ingestion is turned off.

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights component name.')
param appInsightsName string

@description('Azure region.')
param location string

@description('Tags put on every resource.')
param tags object

@description('Days logs and telemetry are kept.')
param retentionInDays int

@description('Accept telemetry only with Entra ID tokens (no instrumentation-key ingestion, no workspace shared keys).')
param disableLocalAuth bool

@description('Principal id of the managed identity that sends telemetry.')
param principalId string

// Built-in role: Monitoring Metrics Publisher.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: disableLocalAuth
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Application Insights connection string. It locates the component (instrumentation key + ingestion endpoint) and is no credential when local auth is disabled.')
output connectionString string = appInsights.properties.ConnectionString

@description('Application Insights component name.')
output appInsightsName string = appInsights.name
