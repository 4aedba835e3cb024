// Multi-region: Azure Front Door (Standard) in front of one gateway per
// region. One origin group holds every region's Function App; Front Door
// probes each on GET /readyz (the gateway answers 200 only when its store is
// reachable and at least one backend circuit is not open, handlers/server.go)
// and sends callers to a healthy region: the first healthy one in list order
// (Priority), or the nearest healthy ones (Latency: every origin at priority
// 1, those within additionalLatencyInMilliseconds of the fastest share the
// traffic). Property names follow the Microsoft.Cdn/profiles/originGroups
// template reference
// (https://learn.microsoft.com/azure/templates/microsoft.cdn/profiles/origingroups).
// Routes cache nothing: every call reaches a gateway.

@description('Short base name used in resource names.')
param name string

@description('Tags put on every resource.')
param tags object

@description('Host name of the first region\'s gateway (func-x.azurewebsites.net).')
param primaryHostName string

@description('Host names of the other regions\' gateways, in priority order.')
param secondaryHostNames array

@description('Priority: all traffic to the first healthy region in list order. Latency: to the nearest healthy regions.')
@allowed([
  'Priority'
  'Latency'
])
param routing string

@description('Path Front Door probes on every origin; the gateway serves it (TestFrontDoorProbeServed).')
param probePath string = '/readyz'

@description('Seconds Front Door waits for an origin to answer; long completions need the maximum.')
@minValue(16)
@maxValue(240)
param originResponseTimeoutSeconds int = 240

var originHostNames = concat([primaryHostName], secondaryHostNames)

resource profile 'Microsoft.Cdn/profiles@2024-09-01' = {
  name: 'afd-${name}'
  location: 'global'
  tags: tags
  sku: {
    name: 'Standard_AzureFrontDoor'
  }
  properties: {
    originResponseTimeoutSeconds: originResponseTimeoutSeconds
  }
}

resource endpoint 'Microsoft.Cdn/profiles/afdEndpoints@2024-09-01' = {
  parent: profile
  name: 'fde-${name}'
  location: 'global'
  tags: tags
  properties: {
    enabledState: 'Enabled'
  }
}

resource originGroup 'Microsoft.Cdn/profiles/originGroups@2024-09-01' = {
  parent: profile
  name: 'gateways'
  properties: {
    loadBalancingSettings: {
      sampleSize: 4
      successfulSamplesRequired: 3
      additionalLatencyInMilliseconds: routing == 'Latency' ? 50 : 0
    }
    healthProbeSettings: {
      probePath: probePath
      probeRequestType: 'GET'
      probeProtocol: 'Https'
      probeIntervalInSeconds: 30
    }
    sessionAffinityState: 'Disabled'
  }
}

resource origins 'Microsoft.Cdn/profiles/originGroups/origins@2024-09-01' = [for (host, i) in originHostNames: {
  parent: originGroup
  name: 'region-${i}'
  properties: {
    hostName: host
    originHostHeader: host
    httpPort: 80
    httpsPort: 443
    priority: routing == 'Priority' ? i + 1 : 1
    weight: 1000
    enabledState: 'Enabled'
    enforceCertificateNameCheck: true
  }
}]

resource route 'Microsoft.Cdn/profiles/afdEndpoints/routes@2024-09-01' = {
  parent: endpoint
  name: 'gateway'
  properties: {
    originGroup: {
      id: originGroup.id
    }
    supportedProtocols: [
      'Https'
    ]
    patternsToMatch: [
      '/*'
    ]
    forwardingProtocol: 'HttpsOnly'
    linkToDefaultDomain: 'Enabled'
    httpsRedirect: 'Disabled'
  }
  dependsOn: [
    origins
  ]
}

@description('Front Door host name callers use, e.g. fde-x.z01.azurefd.net.')
output hostName string = endpoint.properties.hostName

@description('Front Door id (the X-Azure-FDID header), for restricting the Function Apps to this profile.')
output frontDoorId string = profile.properties.frontDoorId
