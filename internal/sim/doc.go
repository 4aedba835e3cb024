// Package sim is a Foundry / Azure OpenAI simulator: one http.Handler that
// answers the Azure OpenAI data plane the way a real resource does (paths,
// bodies, SSE framing and its Azure quirks, rate-limit and utilization
// headers, 429s with retry-after-ms, errors), deterministically, so the
// gateway's tests, `make run` and the benchmarks have a backend to talk to.
//
// Its one job is to imitate the backend. It must not depend on other
// gateway packages (it knows only the wire formats): the gateway is tested
// against it, so sharing code would let a bug hide on both sides.
//
// # Routes
//
//	POST /openai/deployments/{deployment}/chat/completions?api-version=…   api-version required
//	POST /openai/deployments/{deployment}/completions?api-version=…
//	POST /openai/deployments/{deployment}/embeddings?api-version=…
//	POST /openai/v1/chat/completions | completions | embeddings | responses   deployment = body "model"; api-version optional
//	POST /openai/responses?api-version=…                                    deployment = body "model" (azure SDK path)
//	GET  /openai/v1/responses/{id}, /openai/responses/{id}?api-version=…     a stored response
//	GET  /sim/usage      Usage() as JSON               (no auth)
//	POST /sim/reset      Reset(): usage, windows, fault counters   (no auth)
//	POST /sim/metrics-fault?fault=down|slow|   the metrics API answers 503 / never (until the client leaves) / normally
//	POST /subscriptions/{id}/metrics:getBatch?metricnamespace=Microsoft.CognitiveServices/accounts&metricnames=AzureOpenAIProvisionedManagedUtilizationV2&…
//	                     the Azure Monitor metrics batch API (azmetrics), body {"resourceids":[…]}, any bearer token:
//	                     per provisioned deployment (dimension modeldeploymentname) one point per grain with
//	                     average and maximum utilization (%), computed from every admitted request (through a
//	                     gateway or sent directly) plus backgroundLoad; grains appear metrics.delay after they end
//	GET  /sim/healthz    readiness                     (no auth)
//
// Checks run in Azure's order: api-key (401), api-version (400),
// deployment (404 DeploymentNotFound), operation the model supports
// (400 OperationNotSupported: embeddings only on models named *embedding*,
// legacy completions not on reasoning models), the x-sim-fault steering,
// the body (400), then admission (429).
//
// # Configuration
//
// [DefaultConfig] is the resource `make run` uses; [ParseConfig] reads the
// same shape from YAML or JSON:
//
//	apiKey: ""                # empty: no auth; else api-key or Bearer must match
//	region: swedencentral     # x-ms-region
//	window: 60s               # sliding rate-limit window; tpm/rpm are budgets per window
//	metrics: { grain: 60s, delay: 60s, retention: 10m }   # the emulated Azure Monitor metric
//	deployments:
//	  - name: gpt-4o-mini     # the Azure deployment name (path, or v1 body "model")
//	    model: gpt-4o-mini    # reported model, default = name
//	    tpm: 450000
//	    rpm: 2700
//	    latency: {ttft: 150ms, tokensPerSecond: 200}
//	    faults: {errorRate: 0.01, timeoutRate: 0, cutStreamRate: 0.01, seed: 1}
//	  - name: gpt-4o-mini-ptu
//	    model: gpt-4o-mini
//	    provisioned: true
//	    ptuCapacityTPM: 300000
//	    backgroundLoad: 0.5   # share of the budget taken by clients that bypass the gateway (headers, 429s, metric)
//	  - name: text-embedding-3-small
//	    embeddingDims: 256
//	    latency: {embeddingLatency: 40ms}
//
// # Steering headers
//
// Tests steer the simulator per request with headers, which pass through
// the gateway untouched:
//
//	header                     value                 effect
//	x-sim-fault                500 | 502 | 503       that status with an Azure-shaped error body
//	x-sim-fault                429                   429 + retry-after / retry-after-ms (x-sim-retry-after-ms, default 1000)
//	x-sim-fault                timeout               accept, then never answer until the client goes away
//	x-sim-fault                cut                   stream: abort the connection halfway through the content;
//	                                                 non-stream: send headers and half the body, then abort
//	x-sim-fault                cut-before-usage      stream everything but the usage chunk and [DONE]
//	                                                 (Responses: but response.completed), then abort
//	x-sim-fault                reset                 close the connection (TCP RST) before any response
//	x-sim-retry-after-ms       N                     retry-after-ms of x-sim-fault: 429
//	x-sim-pause-after-chunk    N                     after flushing the N-th SSE event (1-based, counting
//	x-sim-pause-ms             M                     the first prompt-filter event), pause M ms
//	x-sim-latency-ttft-ms      N                     time to first token for this request
//	x-sim-tokens-per-second    R                     token pacing for this request (0 = unpaced)
//
// An unknown fault or a malformed value is answered 400, so a typo in a
// test does not silently test nothing. Faults also come from the
// configured rates ([Faults]); the header wins. Aborts use
// panic(http.ErrAbortHandler), which net/http recovers silently: call
// ServeHTTP through an http.Server (httptest.NewServer), not directly
// with a recorder, when injecting cut or reset.
//
// # Determinism
//
// The same request body always produces the same usage and the same text
// (streamed or not), whichever instance answers it: prompt tokens are
// ~1 per 4 bytes of content, +3 per message, +3 for the reply; completion
// tokens are 16..200 from a hash of the prompt, capped by
// max_completion_tokens / max_tokens / max_output_tokens (finish_reason
// "length"); reasoning models add 64..256 reasoning tokens inside
// completion_tokens; prompts of 1024 tokens or more report the largest
// multiple of 128 below prompt_tokens as cached. Ids (chatcmpl-, resp_, …)
// are unique per instance and request.
//
// # What Usage counts
//
// [Server.Usage] adds a request to its deployment's [Totals] only when it
// was answered 200 and got past every point where it could be cut: a whole
// JSON body, a chat/completions stream up to its usage chunk / [DONE]
// (whether or not the client asked for the usage chunk), a Responses
// stream up to response.completed / response.incomplete. The usage is
// recorded just before that final part is written, so a client that has
// read a whole answer always finds it in Usage(). Errors, 429s, timeouts,
// cut, cut-before-usage and reset faults are not counted, nor are requests
// the client abandoned before the final part. Embeddings count prompt
// tokens only.
//
// Rate-limit windows charge the admission estimate (prompt + output cap,
// or 1000 when none is set; provisioned: minus cached tokens) whether or
// not the answer completes, as Azure does.
package sim
