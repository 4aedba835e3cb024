package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// Secret is a string that never appears in logs or formatted output.
type Secret string

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// String implements fmt.Stringer so %v and %s print the redacted form.
func (s Secret) String() string { return s.redacted() }

// GoString keeps %#v redacted too.
func (s Secret) GoString() string { return s.redacted() }

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// Reveal returns the secret itself, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// Duration is a time.Duration that reads "150ms" / "2m" from YAML and JSON.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StoreKind selects the table store implementation.
type StoreKind string

// Store kinds.
const (
	StoreEmbedded    StoreKind = "embedded"
	StoreAzureTables StoreKind = "azure-tables"
)

// QueueKind selects the low-priority queue implementation.
type QueueKind string

// Queue kinds.
const (
	QueueEmbedded   QueueKind = "embedded"
	QueueServiceBus QueueKind = "servicebus"
)

// BlobKind selects the blob store implementation.
type BlobKind string

// Blob kinds.
const (
	BlobEmbedded  BlobKind = "embedded"
	BlobAzureBlob BlobKind = "azure-blob"
)

// Config is the whole gateway configuration. Field comments give defaults.
type Config struct {
	// Listen is the address `handler serve` binds. Default 127.0.0.1:8080.
	// Under Azure Functions it is 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
	// whatever the file says.
	Listen string `yaml:"listen" json:"listen"`
	// MaxBodyBytes caps client request bodies (413 above). Default 16 MiB.
	MaxBodyBytes int64 `yaml:"maxBodyBytes" json:"maxBodyBytes"`
	// BodyReadTimeout bounds reading a client's request body, so a client
	// trickling bytes cannot hold a connection (408 after it). Default 30s.
	BodyReadTimeout Duration `yaml:"bodyReadTimeout" json:"bodyReadTimeout"`
	// MaxHeaderBytes caps a request's header block (431 above it).
	// Default 64 KiB (JWT bearer tokens fit several times over).
	MaxHeaderBytes int `yaml:"maxHeaderBytes" json:"maxHeaderBytes"`
	// Store holds keys, counters, usage and jobs.
	Store StoreConfig `yaml:"store" json:"store"`
	// Queue holds low-priority requests.
	Queue QueueConfig `yaml:"queue" json:"queue"`
	// Blob holds payloads too large for a queue message or a table row
	// (the request bodies of large jobs, see jobs.claimCheckBytes).
	Blob BlobConfig `yaml:"blob" json:"blob"`
	// Backends are the Azure OpenAI / Foundry resources requests go to.
	Backends []Backend `yaml:"backends" json:"backends"`
	// Models maps the alias clients send (body "model" or the deployment in
	// the path) to targets on backends.
	Models map[string]Model `yaml:"models" json:"models"`
	// Proxy tunes forwarding.
	Proxy ProxyConfig `yaml:"proxy" json:"proxy"`
	// Auth tunes client authentication.
	Auth AuthConfig `yaml:"auth" json:"auth"`
	// Timers are the in-process schedules used when not under Functions.
	Timers TimersConfig `yaml:"timers" json:"timers"`
	// Ledger tunes the usage ledger (see ledger.go).
	Ledger LedgerConfig `yaml:"ledger" json:"ledger"`
	// Routing tunes backend health (cooling, circuit breakers), canary
	// stickiness and Responses affinity. See routing.go.
	Routing RoutingConfig `yaml:"routing" json:"routing"`
	// Limits are the rate limits and token budgets (see limits.go).
	Limits LimitsConfig `yaml:"limits" json:"limits"`
	// Jobs tunes low-priority jobs and the drain (see jobs.go).
	Jobs JobsConfig `yaml:"jobs" json:"jobs"`
	// Batch tunes the OpenAI Batch API (see batch.go).
	Batch BatchConfig `yaml:"batch" json:"batch"`
	// Identity accepts JWT bearer tokens from OIDC issuers beside API keys
	// (see identity.go). Default: none, API keys only.
	Identity IdentityConfig `yaml:"identity" json:"identity"`
	// ContentSafety checks prompts with Azure AI Content Safety, per team
	// and model (see safety.go). Default: off.
	ContentSafety SafetyConfig `yaml:"contentSafety" json:"contentSafety"`
	// Audit records prompts and completions of the teams and models that
	// opt in (see safety.go). Default: off.
	Audit AuditConfig `yaml:"audit" json:"audit"`
	// Cache is the exact and semantic response cache (see cache.go).
	// Default: off.
	Cache CacheConfig `yaml:"cache" json:"cache"`

	// AppInsightsConnectionString comes from APPLICATIONINSIGHTS_CONNECTION_STRING;
	// empty disables Application Insights.
	AppInsightsConnectionString Secret `yaml:"-" json:"-"`
	// AppInsightsAuth comes from APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
	AppInsightsAuth string `yaml:"-" json:"-"`

	// UnderFunctions is true when FUNCTIONS_CUSTOMHANDLER_PORT is set: the
	// Functions host then calls the timer functions, not us. Derived.
	UnderFunctions bool `yaml:"-" json:"-"`
	// PublicHost is the app's public host name (WEBSITE_HOSTNAME, set by
	// App Service / Functions); job callbacks to it are refused. Derived.
	PublicHost string `yaml:"-" json:"-"`
}

// StoreConfig selects and connects the table store.
type StoreConfig struct {
	// Kind is embedded (default) or azure-tables.
	Kind StoreKind `yaml:"kind" json:"kind"`
	// Path of the embedded store file. Default ./data/gateway.db.
	Path string `yaml:"path" json:"path"`
	// Connection names the app settings of an azure-tables store, in the
	// Functions convention: <Connection> holds a connection string, or
	// <Connection>__tableServiceUri the service URL used with managed identity
	// (<Connection>__clientId picks a user-assigned identity;
	// <Connection>__credential, if set, must be "managedidentity").
	// Default GatewayTables.
	Connection string `yaml:"connection" json:"connection"`
	// TablePrefix is put before every table name. Default "" (Keys, Counters, …).
	TablePrefix string `yaml:"tablePrefix" json:"tablePrefix"`

	// Resolved from the environment by Load.
	ConnectionString Secret `yaml:"-" json:"-"`
	ServiceURL       string `yaml:"-" json:"-"`
	ClientID         string `yaml:"-" json:"-"`
}

// QueueConfig selects and connects the low-priority queue.
type QueueConfig struct {
	// Kind is embedded (default) or servicebus.
	Kind QueueKind `yaml:"kind" json:"kind"`
	// Path of the embedded queue file. Default ./data/queue.db.
	Path string `yaml:"path" json:"path"`
	// Connection names the app settings of a servicebus queue: <Connection>
	// holds a connection string, or <Connection>__fullyQualifiedNamespace the
	// namespace used with managed identity (<Connection>__clientId optional;
	// <Connection>__credential, if set, must be "managedidentity").
	// Default ServiceBusConnection.
	Connection string `yaml:"connection" json:"connection"`
	// Name of the queue. Default lowpri.
	Name string `yaml:"name" json:"name"`
	// LockDuration of the embedded queue: how long a received message stays
	// locked before another receiver may take it (after a crash, the delay
	// before its jobs run again). Default 60s. Service Bus sets it on the
	// queue entity (infra/main.bicep queueLockDuration).
	LockDuration Duration `yaml:"lockDuration" json:"lockDuration"`

	// Resolved from the environment by Load.
	ConnectionString Secret `yaml:"-" json:"-"`
	Namespace        string `yaml:"-" json:"-"`
	ClientID         string `yaml:"-" json:"-"`
}

// BlobConfig selects and connects the blob store. Each use has its own
// container (jobs.bodyContainer).
type BlobConfig struct {
	// Kind is embedded (default: files under Path) or azure-blob.
	Kind BlobKind `yaml:"kind" json:"kind"`
	// Path of the embedded store's directory. Default ./data/blobs.
	Path string `yaml:"path" json:"path"`
	// Connection names the app settings of an azure-blob store, in the
	// Functions convention: <Connection> holds a connection string, or
	// <Connection>__blobServiceUri the service URL used with managed
	// identity (<Connection>__clientId picks a user-assigned identity;
	// without it DefaultAzureCredential is used, e.g. `az login`).
	// Default GatewayBlobs.
	Connection string `yaml:"connection" json:"connection"`

	// Resolved from the environment by Load.
	ConnectionString Secret `yaml:"-" json:"-"`
	ServiceURL       string `yaml:"-" json:"-"`
	ClientID         string `yaml:"-" json:"-"`
}

// Backend is one Azure OpenAI / Foundry resource.
type Backend struct {
	// Name identifies the backend in targets, logs and usage. Required.
	Name string `yaml:"name" json:"name"`
	// URL is the resource endpoint, e.g. https://x.openai.azure.com. Required.
	URL string `yaml:"url" json:"url"`
	// Region, e.g. swedencentral. Optional; used for data residency.
	Region string `yaml:"region" json:"region"`
	// Provisioned marks PTU deployments (tried before standard ones).
	Provisioned bool `yaml:"provisioned" json:"provisioned"`
	// Capacity of a standard deployment; 0 means unknown.
	Capacity Capacity `yaml:"capacity" json:"capacity"`
	// Auth is how the gateway authenticates to the backend.
	Auth BackendAuth `yaml:"auth" json:"auth"`
	// Timeout to the first response byte. Default proxy.responseHeaderTimeout.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// ResourceID is the ARM id of the Azure OpenAI / Foundry account
	// (/subscriptions/…/providers/Microsoft.CognitiveServices/accounts/…).
	// When set and jobs.signals.metrics is configured, the drain reads the
	// account's AzureOpenAIProvisionedManagedUtilizationV2 metric per
	// deployment. Optional.
	ResourceID string `yaml:"resourceId" json:"resourceId"`
}

// Capacity of a deployment.
type Capacity struct {
	TPM int64 `yaml:"tpm" json:"tpm"`
	RPM int64 `yaml:"rpm" json:"rpm"`
}

// BackendAuth is an API key from the environment, or Entra ID.
type BackendAuth struct {
	// APIKeyEnv names the environment variable holding the key, sent as api-key.
	APIKeyEnv string `yaml:"apiKeyEnv" json:"apiKeyEnv"`
	// ManagedIdentity uses Entra ID (managed identity, or the developer's
	// credentials locally) with scope https://cognitiveservices.azure.com/.default.
	ManagedIdentity bool `yaml:"managedIdentity" json:"managedIdentity"`
	// ClientIDEnv names the variable holding a user-assigned identity's
	// client id. Default AZURE_CLIENT_ID (read only when ManagedIdentity).
	ClientIDEnv string `yaml:"clientIdEnv" json:"clientIdEnv"`
	// None sends no credential (local simulator without a key).
	None bool `yaml:"none" json:"none"`

	// Resolved by Load.
	APIKey   Secret `yaml:"-" json:"-"`
	ClientID string `yaml:"-" json:"-"`
}

// Model is one alias.
type Model struct {
	// Targets are the deployments that can serve the alias.
	Targets []Target `yaml:"targets" json:"targets"`
	// Price per million tokens, for cost.
	Price *Price `yaml:"price" json:"price"`
	// Policy caps every caller's requests to this alias (maxOutputTokens,
	// overCap, maxN); a caller's scope can tighten them, never loosen.
	Policy policy.Caps `yaml:"policy" json:"policy"`
	// Jobs is where and when low-priority jobs of this alias may run (see
	// jobs.go). Default: provisioned targets only, below jobs.drainTarget.
	Jobs JobPolicy `yaml:"jobs" json:"jobs"`
	// Routing picks how targets inside a priority tier are ordered:
	// "weighted" (default: by weight, sticky per caller) or "latency" (by
	// weight scaled by recent time to first byte and live utilization, so
	// a slower or busier deployment gets less; a tier mixing model
	// versions, a canary, stays weighted and sticky).
	Routing RoutingMode `yaml:"routing" json:"routing"`
}

// RoutingMode is how a model orders the targets of a tier.
type RoutingMode string

// Routing modes.
const (
	RoutingWeighted RoutingMode = "weighted"
	RoutingLatency  RoutingMode = "latency"
)

// Target is one deployment of an alias on a backend.
type Target struct {
	// Backend names a configured backend. Required.
	Backend string `yaml:"backend" json:"backend"`
	// Deployment is the backend's deployment name. Default: the alias.
	Deployment string `yaml:"deployment" json:"deployment"`
	// Priority: lower tiers are tried first. Default 1 for provisioned
	// backends, 2 for standard ones.
	Priority int `yaml:"priority" json:"priority"`
	// Weight inside a tier. Default 1.
	Weight int `yaml:"weight" json:"weight"`
	// Version labels the model version this target serves (canary and
	// version migration); sent as x-gateway-model-version when
	// proxy.exposeBackend is on. Default "" (no header).
	Version string `yaml:"version" json:"version"`
	// Price of this deployment when it differs from the alias's (a canary
	// of another model version, a provisioned deployment's effective
	// rate). Default: the alias's price.
	Price *Price `yaml:"price" json:"price"`
}

// Price per million tokens.
type Price struct {
	Input       float64 `yaml:"input" json:"input"`
	CachedInput float64 `yaml:"cachedInput" json:"cachedInput"`
	Output      float64 `yaml:"output" json:"output"`
	Currency    string  `yaml:"currency" json:"currency"`
}

// ProxyConfig tunes forwarding.
type ProxyConfig struct {
	// ResponseHeaderTimeout per backend attempt, to the response headers. Default 120s.
	ResponseHeaderTimeout Duration `yaml:"responseHeaderTimeout" json:"responseHeaderTimeout"`
	// StreamIdleTimeout aborts a stream when no byte arrives for this long. Default 120s.
	StreamIdleTimeout Duration `yaml:"streamIdleTimeout" json:"streamIdleTimeout"`
	// MaxAttempts caps backend attempts per request (first try included). Default 3.
	MaxAttempts int `yaml:"maxAttempts" json:"maxAttempts"`
	// TryDuration caps the total time spent before the first byte across attempts. Default 60s.
	TryDuration Duration `yaml:"tryDuration" json:"tryDuration"`
	// MaxRetryWait caps how long a call waits to retry the same deployment
	// when no other target is eligible: a 429's retry-after-ms /
	// retry-after, or the backoff after a 5xx or connection error. A 429
	// asking for longer goes to the client at once (with its
	// retry-after). Default 2s; negative (e.g. -1s): never wait.
	MaxRetryWait Duration `yaml:"maxRetryWait" json:"maxRetryWait"`
	// RetryBackoff is the first backoff before retrying the same deployment
	// after a 5xx or connection error; it doubles per attempt, with jitter.
	// Default 200ms.
	RetryBackoff Duration `yaml:"retryBackoff" json:"retryBackoff"`
	// ExposeBackend adds x-gateway-backend / x-gateway-deployment response headers. Default false.
	ExposeBackend bool `yaml:"exposeBackend" json:"exposeBackend"`
	// BackendHTTP2 sends backend calls through net/http's Transport, which
	// speaks HTTP/2 to HTTPS backends, instead of the gateway's HTTP/1.1
	// client (internal/upstream), which costs less CPU and latency per
	// call but opens a connection per concurrent call. Default false.
	BackendHTTP2 bool `yaml:"backendHTTP2" json:"backendHTTP2"`
}

// AuthConfig tunes client authentication.
type AuthConfig struct {
	// KeyCacheTTL bounds how long a key lookup is cached per instance, and
	// so how long a revoked key may still work on an instance. Default 30s.
	KeyCacheTTL Duration `yaml:"keyCacheTTL" json:"keyCacheTTL"`
	// AdminTeams is no longer read: admin rights are the admin scope of a
	// key (handler keys create --admin) or of an identity rule (admin:
	// true). Setting it is an error that says so.
	AdminTeams []string `yaml:"adminTeams" json:"adminTeams"`
}

// TimersConfig sets the in-process timer periods (outside Functions).
type TimersConfig struct {
	// Drain period. Default 10s.
	Drain Duration `yaml:"drain" json:"drain"`
	// Rollup period. Default 5m.
	Rollup Duration `yaml:"rollup" json:"rollup"`
}

// Environment variables read directly (beyond those a config file names).
const (
	EnvConfigPath    = "GATEWAY_CONFIG"
	EnvFunctionsPort = "FUNCTIONS_CUSTOMHANDLER_PORT"
	EnvAppRoot       = "FUNCTIONS_APP_ROOT_PATH"
	EnvAppInsights   = "APPLICATIONINSIGHTS_CONNECTION_STRING"
	// EnvAppInsightsAuth is "ClientId=<id>;Authorization=AAD" when
	// ingestion takes Entra ID tokens only (local auth disabled).
	EnvAppInsightsAuth = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
	DefaultConfigFile  = "gateway.yaml"
)

// Path returns the config file to load: flagValue if set, else
// $GATEWAY_CONFIG, else gateway.yaml (under $FUNCTIONS_APP_ROOT_PATH when set).
// A relative path is taken relative to the app root under Functions.
func Path(flagValue string, getenv func(string) string) string {
	p := flagValue
	if p == "" {
		p = getenv(EnvConfigPath)
	}
	if p == "" {
		p = DefaultConfigFile
	}
	if root := getenv(EnvAppRoot); root != "" && !strings.HasPrefix(p, "/") {
		p = strings.TrimSuffix(root, "/") + "/" + p
	}
	return p
}

// LoadFile reads and parses the file at path. See Parse.
func LoadFile(path string, getenv func(string) string) (Config, error) {
	return loadWith(path, getenv, Parse)
}

// loadWith reads the file at path and parses it with parse, naming the
// file in any error.
func loadWith(path string, getenv func(string) string, parse func([]byte, func(string) string) (Config, error)) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := parse(b, getenv)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse decodes YAML or JSON, expands ${NAME} from getenv, applies
// defaults, resolves secrets and validates. Unknown fields are errors.
func Parse(data []byte, getenv func(string) string) (Config, error) {
	data, err := expand(data, getenv)
	if err != nil {
		return Config{}, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("parse: %w", syntaxLine(data, err))
	}
	c.applyDefaults()
	if err := c.resolve(getenv); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// expand replaces every ${NAME} in data with getenv(NAME); a reference to
// an unset variable is an error that names it.
func expand(data []byte, getenv func(string) string) ([]byte, error) {
	var missing []string
	data = envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(envRef.FindSubmatch(m)[1])
		v := getenv(name)
		if v == "" {
			missing = append(missing, name)
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variables referenced by the config are not set: %s", strings.Join(missing, ", "))
	}
	return data, nil
}

// LoadStoreFile reads only the parts of the file at path that the operator
// commands (keys, limits, usage) use: store and models. See ParseStore.
func LoadStoreFile(path string, getenv func(string) string) (Config, error) {
	return loadWith(path, getenv, ParseStore)
}

// ParseStore decodes only the store and models sections: ${NAME}
// references elsewhere (backend endpoints, the queue) are not expanded, and
// only the store's connection settings are read from getenv. So an operator
// can manage keys in Azure with the deployed config file and nothing but
// the table endpoint set (GatewayTables__tableServiceUri and `az login`).
// Every other field of the result keeps its default.
func ParseStore(data []byte, getenv func(string) string) (Config, error) {
	var root map[string]yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	var c Config
	for _, sec := range []struct {
		key string
		dst any
	}{{"store", &c.Store}, {"models", &c.Models}} {
		n, ok := root[sec.key]
		if !ok {
			continue
		}
		sub, err := yaml.Marshal(&n)
		if err != nil {
			return Config{}, fmt.Errorf("parse %s: %w", sec.key, err)
		}
		if sub, err = expand(sub, getenv); err != nil {
			return Config{}, fmt.Errorf("%s: %w", sec.key, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(sub))
		dec.KnownFields(true)
		if err := dec.Decode(sec.dst); err != nil {
			return Config{}, fmt.Errorf("parse %s: %w", sec.key, err)
		}
	}
	c.applyDefaults()
	errs := c.Store.resolve(getenv)
	switch c.Store.Kind {
	case StoreEmbedded, StoreAzureTables:
	default:
		errs = append(errs, fmt.Errorf("store.kind %q: want %s or %s", c.Store.Kind, StoreEmbedded, StoreAzureTables))
	}
	return c, errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = Duration(30 * time.Second)
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.Store.Kind == "" {
		c.Store.Kind = StoreEmbedded
	}
	if c.Store.Path == "" {
		c.Store.Path = "./data/gateway.db"
	}
	if c.Store.Connection == "" {
		c.Store.Connection = "GatewayTables"
	}
	if c.Queue.Kind == "" {
		c.Queue.Kind = QueueEmbedded
	}
	if c.Queue.Path == "" {
		c.Queue.Path = "./data/queue.db"
	}
	if c.Queue.Connection == "" {
		c.Queue.Connection = "ServiceBusConnection"
	}
	if c.Queue.Name == "" {
		c.Queue.Name = "lowpri"
	}
	if c.Blob.Kind == "" {
		c.Blob.Kind = BlobEmbedded
	}
	if c.Blob.Path == "" {
		c.Blob.Path = "./data/blobs"
	}
	if c.Blob.Connection == "" {
		c.Blob.Connection = "GatewayBlobs"
	}
	if c.Proxy.ResponseHeaderTimeout == 0 {
		c.Proxy.ResponseHeaderTimeout = Duration(120 * time.Second)
	}
	if c.Proxy.StreamIdleTimeout == 0 {
		c.Proxy.StreamIdleTimeout = Duration(120 * time.Second)
	}
	if c.Proxy.MaxAttempts == 0 {
		c.Proxy.MaxAttempts = 3
	}
	if c.Proxy.TryDuration == 0 {
		c.Proxy.TryDuration = Duration(60 * time.Second)
	}
	if c.Proxy.MaxRetryWait == 0 {
		c.Proxy.MaxRetryWait = Duration(2 * time.Second)
	}
	if c.Proxy.RetryBackoff == 0 {
		c.Proxy.RetryBackoff = Duration(200 * time.Millisecond)
	}
	if c.Auth.KeyCacheTTL == 0 {
		c.Auth.KeyCacheTTL = Duration(30 * time.Second)
	}
	if c.Timers.Drain == 0 {
		c.Timers.Drain = Duration(10 * time.Second)
	}
	if c.Timers.Rollup == 0 {
		c.Timers.Rollup = Duration(5 * time.Minute)
	}
	c.Routing.applyDefaults()
	c.Limits.applyDefaults()
	c.Ledger.applyDefaults()
	c.Jobs.applyDefaults()
	c.Batch.applyDefaults()
	c.Identity.applyDefaults()
	c.ContentSafety.applyDefaults()
	c.Audit.applyDefaults()
	c.Cache.applyDefaults()
	provisioned := map[string]bool{}
	for i := range c.Backends {
		b := &c.Backends[i]
		b.URL = strings.TrimSuffix(b.URL, "/")
		if b.Timeout == 0 {
			b.Timeout = c.Proxy.ResponseHeaderTimeout
		}
		if b.Auth.ManagedIdentity && b.Auth.ClientIDEnv == "" {
			b.Auth.ClientIDEnv = "AZURE_CLIENT_ID"
		}
		provisioned[b.Name] = b.Provisioned
	}
	for alias, m := range c.Models {
		for i := range m.Targets {
			t := &m.Targets[i]
			if t.Deployment == "" {
				t.Deployment = alias
			}
			if t.Priority == 0 {
				t.Priority = 2
				if provisioned[t.Backend] {
					t.Priority = 1
				}
			}
			if t.Weight == 0 {
				t.Weight = 1
			}
		}
		if m.Price != nil && m.Price.Currency == "" {
			m.Price.Currency = "USD"
		}
		for i := range m.Targets {
			// A deployment's own price is in the alias's currency unless it
			// names one (validate refuses a model priced in two).
			if p := m.Targets[i].Price; p != nil && p.Currency == "" {
				p.Currency = "USD"
				if m.Price != nil {
					p.Currency = m.Price.Currency
				}
			}
		}
		if m.Jobs.Threshold == 0 {
			m.Jobs.Threshold = c.Jobs.DrainTarget
		}
		if m.Routing == "" {
			m.Routing = RoutingWeighted
		}
		c.Models[alias] = m
	}
}

// resolve reads every environment variable the configuration names.
func (c *Config) resolve(getenv func(string) string) error {
	c.PublicHost = getenv("WEBSITE_HOSTNAME")
	if port := getenv(EnvFunctionsPort); port != "" {
		c.Listen = net.JoinHostPort("127.0.0.1", port)
		c.UnderFunctions = true
	}
	c.AppInsightsConnectionString = Secret(getenv(EnvAppInsights))
	c.AppInsightsAuth = getenv(EnvAppInsightsAuth)
	c.ContentSafety.resolve(getenv)
	var errs []error
	errs = append(errs, c.Jobs.resolve(getenv))
	errs = append(errs, c.Store.resolve(getenv)...)
	switch c.Blob.Kind {
	case BlobAzureBlob:
		p := c.Blob.Connection
		c.Blob.ConnectionString = Secret(getenv(p))
		if c.Blob.ConnectionString == "" {
			c.Blob.ServiceURL = getenv(p + "__blobServiceUri")
			c.Blob.ClientID = getenv(p + "__clientId")
			errs = append(errs, checkCredential(p, getenv))
			if c.Blob.ServiceURL == "" {
				errs = append(errs, fmt.Errorf("blob: set %s (connection string) or %s__blobServiceUri (managed identity)", p, p))
			}
		}
	}
	switch c.Queue.Kind {
	case QueueServiceBus:
		p := c.Queue.Connection
		c.Queue.ConnectionString = Secret(getenv(p))
		if c.Queue.ConnectionString == "" {
			c.Queue.Namespace = getenv(p + "__fullyQualifiedNamespace")
			c.Queue.ClientID = getenv(p + "__clientId")
			errs = append(errs, checkCredential(p, getenv))
			if c.Queue.Namespace == "" {
				errs = append(errs, fmt.Errorf("queue: set %s (connection string) or %s__fullyQualifiedNamespace (managed identity)", p, p))
			}
		}
	}
	for i := range c.Backends {
		b := &c.Backends[i]
		switch {
		case b.Auth.APIKeyEnv != "":
			b.Auth.APIKey = Secret(getenv(b.Auth.APIKeyEnv))
			if b.Auth.APIKey == "" {
				errs = append(errs, fmt.Errorf("backend %q: environment variable %s (apiKeyEnv) is empty", b.Name, b.Auth.APIKeyEnv))
			}
		case b.Auth.ManagedIdentity:
			b.Auth.ClientID = getenv(b.Auth.ClientIDEnv)
		}
	}
	return errors.Join(errs...)
}

// resolve reads the connection settings of an azure-tables store.
func (s *StoreConfig) resolve(getenv func(string) string) []error {
	if s.Kind != StoreAzureTables {
		return nil
	}
	var errs []error
	p := s.Connection
	s.ConnectionString = Secret(getenv(p))
	if s.ConnectionString == "" {
		s.ServiceURL = getenv(p + "__tableServiceUri")
		s.ClientID = getenv(p + "__clientId")
		if err := checkCredential(p, getenv); err != nil {
			errs = append(errs, err)
		}
		if s.ServiceURL == "" {
			errs = append(errs, fmt.Errorf("store: set %s (connection string) or %s__tableServiceUri (Entra ID: managed identity, or DefaultAzureCredential such as `az login` when %s__clientId is unset)", p, p, p))
		}
	}
	return errs
}

// checkCredential reads <prefix>__credential, the Functions convention for
// identity-based connections; the only kind the gateway supports is
// managedidentity (the default when the setting is absent).
func checkCredential(prefix string, getenv func(string) string) error {
	switch v := getenv(prefix + "__credential"); strings.ToLower(v) {
	case "", "managedidentity":
		return nil
	default:
		return fmt.Errorf("%s__credential %q: only managedidentity is supported", prefix, v)
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.BodyReadTimeout < Duration(time.Second) {
		bad("bodyReadTimeout %v: must be at least 1s", c.BodyReadTimeout.D())
	}
	if c.MaxHeaderBytes < 4096 {
		bad("maxHeaderBytes %d: must be at least 4096", c.MaxHeaderBytes)
	}
	if c.MaxBodyBytes < 1024 {
		bad("maxBodyBytes %d: must be at least 1024", c.MaxBodyBytes)
	}
	switch c.Store.Kind {
	case StoreEmbedded, StoreAzureTables:
	default:
		bad("store.kind %q: want %s or %s", c.Store.Kind, StoreEmbedded, StoreAzureTables)
	}
	switch c.Queue.Kind {
	case QueueEmbedded, QueueServiceBus:
	default:
		bad("queue.kind %q: want %s or %s", c.Queue.Kind, QueueEmbedded, QueueServiceBus)
	}
	switch c.Blob.Kind {
	case BlobEmbedded, BlobAzureBlob:
	default:
		bad("blob.kind %q: want %s or %s", c.Blob.Kind, BlobEmbedded, BlobAzureBlob)
	}
	if c.Queue.LockDuration < 0 {
		bad("queue.lockDuration %v: must not be negative", c.Queue.LockDuration.D())
	}
	if c.Proxy.MaxAttempts < 1 {
		bad("proxy.maxAttempts %d: must be at least 1", c.Proxy.MaxAttempts)
	}
	if c.Proxy.RetryBackoff < 0 {
		bad("proxy.retryBackoff %v: must be positive", c.Proxy.RetryBackoff.D())
	}
	errs = append(errs, c.Routing.validate()...)
	errs = append(errs, c.Jobs.validate()...)
	errs = append(errs, c.Batch.validate()...)
	errs = append(errs, c.Ledger.validate()...)
	errs = append(errs, c.Identity.validate()...)
	errs = append(errs, c.ContentSafety.validate(c.Models)...)
	errs = append(errs, c.Audit.validate(c.Models)...)
	errs = append(errs, c.Cache.validate(c.Models)...)
	if len(c.Auth.AdminTeams) > 0 {
		bad("auth.adminTeams: replaced by the admin scope; create admin keys with `handler keys create --admin` or set admin: true on an identity rule")
	}
	for i, r := range c.Identity.Rules {
		for _, m := range r.Models {
			if _, ok := c.Models[m]; !ok {
				bad("identity.rules[%d]: model %q is not in models", i, m)
			}
		}
	}
	names := map[string]bool{}
	for i, b := range c.Backends {
		if b.Name == "" {
			bad("backends[%d]: name is required", i)
			continue
		}
		if names[b.Name] {
			bad("backends[%d]: duplicate name %q", i, b.Name)
		}
		names[b.Name] = true
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("backend %q: url %q must be an absolute http(s) URL", b.Name, b.URL)
		}
		n := 0
		for _, set := range []bool{b.Auth.APIKeyEnv != "", b.Auth.ManagedIdentity, b.Auth.None} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad("backend %q: auth needs exactly one of apiKeyEnv, managedIdentity, none", b.Name)
		}
		if b.ResourceID != "" && !validResourceID(b.ResourceID) {
			bad("backend %q: resourceId %q: want /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>", b.Name, b.ResourceID)
		}
	}
	if len(c.Models) == 0 {
		bad("models: at least one model alias is required")
	}
	aliases := make([]string, 0, len(c.Models))
	for a := range c.Models {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, a := range aliases {
		m := c.Models[a]
		if strings.ContainsAny(a, "/\\#?") {
			bad("model %q: alias must not contain / \\ # ?", a)
		}
		if len(m.Targets) == 0 {
			bad("model %q: at least one target is required", a)
		}
		if m.Routing != RoutingWeighted && m.Routing != RoutingLatency {
			bad("model %q: routing %q must be weighted or latency", a, m.Routing)
		}
		for i, t := range m.Targets {
			if !names[t.Backend] {
				bad("model %q target %d: unknown backend %q", a, i, t.Backend)
			}
			if p := t.Price; p != nil && (p.Input < 0 || p.Output < 0 || p.CachedInput < 0) {
				bad("model %q target %d: prices must not be negative", a, i)
			}
			if t.Weight < 0 || t.Priority < 0 {
				bad("model %q target %d: weight and priority must not be negative", a, i)
			}
		}
		if p := m.Price; p != nil && (p.Input < 0 || p.Output < 0 || p.CachedInput < 0) {
			bad("model %q: prices must not be negative", a)
		}
		// One ISO 4217 currency per model, across its deployments: the
		// ledger sums a model's cost, and a sum of two currencies is no
		// amount.
		currencies := map[string]bool{}
		check := func(where string, p *Price) {
			if p == nil {
				return
			}
			if !money.ValidCurrency(p.Currency) {
				bad("model %q%s: price currency %q is not an ISO 4217 code (e.g. USD, EUR, GBP, upper case)", a, where, p.Currency)
				return
			}
			currencies[p.Currency] = true
		}
		check("", m.Price)
		for i := range m.Targets {
			check(fmt.Sprintf(" target %d", i), m.Targets[i].Price)
		}
		if len(currencies) > 1 {
			cs := make([]string, 0, len(currencies))
			for c := range currencies {
				cs = append(cs, c)
			}
			sort.Strings(cs)
			bad("model %q: prices in %s; every deployment of a model must use one currency", a, strings.Join(cs, " and "))
		}
		if err := m.Policy.Validate(); err != nil {
			bad("model %q policy: %v", a, err)
		}
		errs = append(errs, c.validateJobPolicy(a, m)...)
	}
	errs = append(errs, c.Limits.Validate()...)
	return errors.Join(errs...)
}

// Backend returns the named backend.
func (c *Config) Backend(name string) (Backend, bool) {
	for _, b := range c.Backends {
		if b.Name == name {
			return b, true
		}
	}
	return Backend{}, false
}
