// Package utilization tells the drain how busy each deployment is, from
// every signal it has, best first:
//
//  1. Azure Monitor: the account metric AzureOpenAIProvisionedManagedUtilizationV2
//     split by ModelDeploymentName ([Metrics], read with the SDK's
//     metrics query client). It sees all traffic, also apps that call the
//     account directly, but arrives a minute or more late (PT1M grain).
//  2. Response headers (azure-openai-deployment-utilization, or
//     x-ratelimit-remaining-* against the limit): this instance's own
//     samples, and the other instances' ([Fleet]: each instance writes its
//     newest samples to one row of the DeploymentLoad table at most once
//     per second; the drain reads the whole partition). A sample read
//     from x-ratelimit-remaining-* carries when its window resets
//     (x-ratelimit-reset-*, [Reading.Until]; the fleet's rows carry it
//     too): past it the deployment reads 0%, however young or busy the
//     sample, unless a source saw the deployment after the sample.
//  3. Nothing fresh: unknown, which the drain treats as busy.
//
// [Signals] combines them per deployment: the newest fresh reading wins (a
// metric point counts at the end of its grain), so a live header sample
// overrides an older metric point, and a metric point overrides header
// samples older than it. It remembers what it answered, for the admin
// endpoint and telemetry.
//
// It depends on the store contract, route (samples) and the Azure SDK's
// azmetrics types; never on jobs or handlers.
package utilization
