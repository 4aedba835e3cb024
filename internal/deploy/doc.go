// Package deploy builds the Azure Functions deployment package of the gateway
// (a zip with host.json, each functions/<name>/function.json of the
// repository as <name>/function.json at the zip root, where the host indexes
// functions, the linux/amd64 `handler` binary with its execute bit, and the
// gateway config as gateway.yaml) and checks a built package before it is
// deployed: the host's indexing rules (one level, valid function names, at
// least one binding), host.json valid for a proxied custom handler, each
// function.json valid for its trigger, and no secret-looking strings. It
// also parses NCRONTAB schedules ([ParseNCRONTAB]).
//
// `handler package` and `make package` call [Package] then [Check]; the tests
// in this package also check infra/*.bicep against what the gateway reads.
//
// It must not depend on the gateway's runtime packages (handlers, store,
// queue, proxy, …): it only reads files.
package deploy
