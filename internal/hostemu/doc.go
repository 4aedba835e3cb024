// Package hostemu runs a Functions deployment package the way the Azure
// Functions host runs a custom handler, so that tests exercise the real
// package (`handler package`) instead of a hand-made imitation of it. It is
// test support only; nothing in the gateway's product path imports it.
//
// What it does, each step written from Azure/azure-functions-host (paths
// under src/WebJobs.Script/) and ../shared/reference/azure-functions-and-openai.md
// A1–A6:
//
//   - unzips the package into an app root, keeping the Unix mode bits;
//   - indexes functions like Host/HostFunctionMetadataProvider.cs: only the
//     folders directly under the app root, each with a function.json, the
//     folder name checked by Utility.IsValidFunctionName, at least one
//     binding; a package that indexes to zero functions is an error;
//   - reads host.json customHandler like Workers/Http/Configuration/
//     HttpWorkerOptionsSetup.cs and HttpWorkerDescription.cs: the executable
//     is resolved against the app root when that file exists, the working
//     directory defaults to the app root (a relative one is joined to it),
//     arguments are expanded from the environment (app settings) with unset
//     %NAME% references removed (Workers/ProcessManagement/
//     DefaultWorkerProcessFactory.cs), extensions.http.routePrefix defaults
//     to "api";
//   - starts the handler with FUNCTIONS_CUSTOMHANDLER_PORT,
//     FUNCTIONS_CUSTOMHANDLER_WORKER_ID, FUNCTIONS_HTTPWORKER_PORT,
//     FUNCTIONS_HTTPWORKER_ID and FUNCTIONS_APP_ROOT_PATH added to the app
//     settings (Workers/Http/HttpWorkerProcess.cs) and polls GET / until any
//     HTTP response (DefaultHttpWorkerService.IsWorkerReady);
//   - serves a front end: /admin/* and /runtime/webhooks/* belong to the host
//     and are never forwarded; other requests are matched against the HTTP
//     functions' route templates ({name}, {name?}, {*rest}) and methods, and
//     with enableProxyingHttpRequest a function with exactly one httpTrigger
//     input and one http output is reverse-proxied with its original path
//     and query, X-Azure-Functions-InvocationId and
//     X-Azure-Functions-HostVersion overwritten and x-ms-invocation-id set
//     to the invocation id (DefaultHttpWorkerService.AddProxyingHeaders,
//     HttpProxyService/DefaultHttpProxyService.StartForwarding), the
//     response streamed as it arrives;
//   - fires timer triggers on their NCRONTAB schedule (a %Setting% schedule
//     is resolved from the app settings) over the payload protocol: POST
//     /{function} with {"Data":{<binding>:<TimerInfo>},"Metadata":{"sys":…}},
//     Content-Type application/json, X-Azure-Functions-InvocationId,
//     X-Azure-Functions-HostVersion and User-Agent Azure-Functions-Host/<v>
//     (DefaultHttpWorkerService.AddHeaders); a non-2xx answer or a body that
//     is not an invocation result fails the invocation.
//
// Not emulated: payload-mode HTTP triggers and forwarding mode (the gateway
// uses proxying), non-timer triggers, keys for authLevel function/admin,
// retries, singleton locks across instances and useMonitor storage.
package hostemu
