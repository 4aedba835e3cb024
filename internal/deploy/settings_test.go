package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/config"
)

// platformSettings are app settings the Functions host or the App Service
// platform reads itself, whatever the functions are. Source: Microsoft Learn
// "App settings reference for Azure Functions" (functions-app-settings.md:
// FUNCTIONS_EXTENSION_VERSION, FUNCTIONS_WORKER_RUNTIME,
// WEBSITE_RUN_FROM_PACKAGE, WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID,
// APPLICATIONINSIGHTS_CONNECTION_STRING,
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and "Connecting to host storage
// with an identity" (functions-reference.md: the AzureWebJobsStorage
// connection, which the host always uses, e.g. for timer trigger locks).
var platformSettings = map[string]bool{
	"FUNCTIONS_EXTENSION_VERSION":                  true,
	"FUNCTIONS_WORKER_RUNTIME":                     true,
	"WEBSITE_RUN_FROM_PACKAGE":                     true,
	"WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID": true,
	"APPLICATIONINSIGHTS_CONNECTION_STRING":        true,
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING":    true,
}

// platformConnections are connection prefixes the host reads as
// <prefix>, <prefix>__accountName, <prefix>__credential, <prefix>__clientId, ….
var platformConnections = []string{"AzureWebJobsStorage"}

// settingsList is what one `appSettings:` property of the Bicep sets.
type settingsList struct {
	where   string   // the variable or resource that holds it
	names   []string // literal setting names
	dynamic []string // *Settings variables whose names come from parameters
}

// bicepAppSettings finds every `appSettings:` property in the files and
// resolves the setting names it sets: an array literal of { name: '…' }
// objects, or an expression (concat, ternaries) over variables named
// *Settings that hold such literals. Anything else is an error, so the
// extractor cannot silently miss a setting.
func bicepAppSettings(t *testing.T, files map[string]*bicepFile) []settingsList {
	t.Helper()
	var lists []settingsList
	for _, p := range sortedFileKeys(files) {
		f := files[p]
		for i, tk := range f.toks {
			if !(tk.kind == tokIdent && tk.text == "appSettings" && f.tok(i+1).text == ":") {
				continue
			}
			l := settingsList{where: filepath.Base(p) + ":" + f.enclosingVar(i)}
			end := f.exprEnd(i + 2)
			for j := i + 2; j < end; j++ {
				switch x := f.toks[j]; {
				case x.text == "[" && j == i+2:
					l.names = append(l.names, f.arrayNames(t, j)...)
					j = f.matching(j)
				case x.kind == tokIdent && f.vars[x.text]:
					if !strings.HasSuffix(x.text, "Settings") {
						t.Errorf("%s:%d: appSettings uses %s; name app setting variables *Settings", p, x.line, x.text)
						continue
					}
					names, dyn := f.settingsVar(t, x.text)
					l.names = append(l.names, names...)
					if dyn {
						l.dynamic = append(l.dynamic, x.text)
					}
				case x.kind == tokIdent && f.syms[x.text] != "":
					t.Errorf("%s:%d: appSettings uses %s (%s), which the settings extractor cannot read", p, x.line, x.text, f.syms[x.text])
				}
			}
			lists = append(lists, l)
		}
	}
	return lists
}

// settingsVar returns the literal names in `var name = [ … ]`, or reports a
// `[for …]` variable as dynamic.
func (f *bicepFile) settingsVar(t *testing.T, name string) ([]string, bool) {
	for i, tk := range f.toks {
		if tk.firstOnLine && tk.text == "var" && f.tok(i+1).text == name && f.tok(i+2).text == "=" {
			if f.tok(i+3).text != "[" {
				t.Errorf("%s:%d: var %s is not an array literal", f.path, tk.line, name)
				return nil, false
			}
			if f.tok(i+4).text == "for" {
				return nil, true
			}
			return f.arrayNames(t, i+3), false
		}
	}
	t.Errorf("%s: var %s not found", f.path, name)
	return nil, false
}

// arrayNames returns the `name: '…'` values of the objects directly inside
// the array literal opening at token open.
func (f *bicepFile) arrayNames(t *testing.T, open int) []string {
	var names []string
	depth := 0
	for j := open; j < len(f.toks); j++ {
		switch f.toks[j].text {
		case "[", "{", "(":
			depth++
		case "]", "}", ")":
			depth--
		}
		if depth == 0 {
			return names
		}
		if depth == 2 && f.toks[j].text == "name" && f.tok(j+1).text == ":" {
			v := f.tok(j + 2)
			if v.kind != tokString || strings.Contains(v.text, "${") {
				t.Errorf("%s:%d: app setting name is not a literal string", f.path, v.line)
				continue
			}
			names = append(names, strings.Trim(v.text, "'"))
		}
	}
	return names
}

// matching returns the index of the token closing the bracket at open.
func (f *bicepFile) matching(open int) int {
	depth := 0
	for j := open; j < len(f.toks); j++ {
		switch f.toks[j].text {
		case "[", "{", "(":
			depth++
		case "]", "}", ")":
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return len(f.toks)
}

// exprEnd returns the index just past the expression starting at token i:
// the first token on a later line at bracket depth zero.
func (f *bicepFile) exprEnd(i int) int {
	depth := 0
	for j := i; j < len(f.toks); j++ {
		if depth == 0 && j > i && f.toks[j].firstOnLine {
			return j
		}
		switch f.toks[j].text {
		case "[", "{", "(":
			depth++
		case "]", "}", ")":
			depth--
			if depth < 0 {
				return j
			}
		}
	}
	return len(f.toks)
}

// enclosingVar names the top-level declaration that contains token i.
func (f *bicepFile) enclosingVar(i int) string {
	for j := i; j >= 0; j-- {
		tk := f.toks[j]
		if tk.firstOnLine && (tk.text == "var" || tk.text == "resource" || tk.text == "module") {
			return f.tok(j + 1).text
		}
	}
	return "?"
}

func sortedFileKeys(m map[string]*bicepFile) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fakeValue is a plausible value for an environment variable the gateway
// asks for.
func fakeValue(name string) string {
	switch {
	case strings.HasSuffix(name, "__tableServiceUri"):
		return "https://fake.table.core.windows.net/"
	case strings.HasSuffix(name, "__blobServiceUri"):
		return "https://fake.blob.core.windows.net/"
	case strings.HasSuffix(name, "__fullyQualifiedNamespace"):
		return "fake.servicebus.windows.net"
	case strings.HasSuffix(name, "__credential"):
		return "managedidentity"
	case strings.HasSuffix(name, "__clientId") || name == "AZURE_CLIENT_ID":
		return "00000000-0000-0000-0000-000000000000"
	case strings.HasSuffix(name, "_PORT"):
		return "7071"
	case name == config.EnvAppRoot:
		return "/home/site/wwwroot"
	case name == config.EnvAppInsights:
		return "IngestionEndpoint=https://fake.in.applicationinsights.azure.com/"
	case strings.HasSuffix(name, "RESOURCE_ID"):
		return "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/fake/providers/Microsoft.CognitiveServices/accounts/fake"
	case strings.Contains(name, "ENDPOINT") || strings.HasSuffix(name, "_URL") || strings.HasSuffix(name, "_URI"):
		return "https://fake.openai.azure.com"
	default:
		return "fake"
	}
}

// gatewayEnv runs the gateway's config resolution (config.Path, then
// config.LoadFile on cfgPath) with an environment holding a fake value for
// every name set reports true, and returns the names asked and the result.
func gatewayEnv(cfgPath string, set func(string) bool) (map[string]bool, config.Config, error) {
	asked := map[string]bool{}
	getenv := func(name string) string {
		asked[name] = true
		if set(name) {
			return fakeValue(name)
		}
		return ""
	}
	config.Path("", getenv)
	c, err := config.LoadFile(cfgPath, getenv)
	return asked, c, err
}

// gatewayReads explores which settings the gateway reads: every name asked
// with all names set, then with each asked name (and each pair) unset, so
// that alternatives (a connection string or its identity-based settings)
// show up too.
func gatewayReads(cfgPath string) map[string]bool {
	reads := map[string]bool{}
	queue := []map[string]bool{{}}
	seen := map[string]bool{"": true}
	for len(queue) > 0 {
		unset := queue[0]
		queue = queue[1:]
		asked, _, _ := gatewayEnv(cfgPath, func(n string) bool { return !unset[n] })
		for n := range asked {
			reads[n] = true
			if unset[n] || len(unset) >= 2 {
				continue
			}
			next := map[string]bool{n: true}
			for k := range unset {
				next[k] = true
			}
			key := strings.Join(sortedBoolKeys(next), ",")
			if !seen[key] {
				seen[key] = true
				queue = append(queue, next)
			}
		}
	}
	return reads
}

// hostReads reports whether the Functions host reads setting name for this
// app: a platform setting, a binding connection of a functions/*/function.json
// (as <connection> or <connection>__*), or a %NAME% in host.json.
func hostReads(t *testing.T, root string) func(string) bool {
	t.Helper()
	exact := map[string]bool{}
	for k := range platformSettings {
		exact[k] = true
	}
	prefixes := append([]string{}, platformConnections...)
	host, err := os.ReadFile(filepath.Join(root, HostFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`%([A-Za-z_][A-Za-z0-9_]*)%`).FindAllStringSubmatch(string(host), -1) {
		exact[m[1]] = true
	}
	fns, _ := filepath.Glob(filepath.Join(root, FunctionsDir, "*", FunctionFile))
	for _, fn := range fns {
		raw, err := os.ReadFile(fn)
		if err != nil {
			t.Fatal(err)
		}
		var fj struct {
			Bindings []map[string]any `json:"bindings"`
		}
		if err := json.Unmarshal(raw, &fj); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		for _, b := range fj.Bindings {
			if c, ok := b["connection"].(string); ok && c != "" {
				prefixes = append(prefixes, c)
			}
			for _, v := range b {
				if s, ok := v.(string); ok && appSetting.MatchString(s) {
					exact[strings.Trim(s, "%")] = true
				}
			}
		}
	}
	return func(name string) bool {
		if exact[name] {
			return true
		}
		for _, p := range prefixes {
			if name == p || strings.HasPrefix(name, p+"__") {
				return true
			}
		}
		return false
	}
}

func TestBicepSettingsMatchGateway(t *testing.T) {
	root := repoRoot(t)
	infra := filepath.Join(root, "infra")
	files, _ := lintBicepDir(t, infra) // lint findings are TestBicepStatic's
	lists := bicepAppSettings(t, files)
	if len(lists) == 0 {
		t.Fatal("no appSettings found in infra/**/*.bicep")
	}
	cfgPath := filepath.Join(infra, "config", "azure.yaml")
	reads := gatewayReads(cfgPath)

	// Required with everything else set: a setting with no alternative.
	required := map[string]bool{}
	for n := range reads {
		if _, _, err := gatewayEnv(cfgPath, func(x string) bool { return x != n }); err != nil {
			required[n] = true
		}
	}
	host := hostReads(t, root)
	_, cfg, err := gatewayEnv(cfgPath, func(string) bool { return true })
	if err != nil {
		t.Fatalf("the gateway cannot load %s even with every setting: %v", cfgPath, err)
	}

	for _, l := range lists {
		set := map[string]bool{}
		for _, n := range l.names {
			if set[n] {
				t.Errorf("%s sets %s twice", l.where, n)
			}
			set[n] = true
		}
		// The settings this plan gives the gateway must be enough to load
		// its config, and each one the load fails without is required.
		env := func(n string) bool { return set[n] && reads[n] }
		if _, _, err := gatewayEnv(cfgPath, env); err != nil {
			t.Errorf("%s: the gateway cannot load %s with the Bicep's settings: %v", l.where, cfgPath, err)
		} else {
			for n := range reads {
				if !env(n) {
					continue
				}
				if _, _, err := gatewayEnv(cfgPath, func(x string) bool { return x != n && env(x) }); err != nil {
					required[n] = true
				}
			}
		}
		for _, n := range sortedBoolKeys(set) {
			if !reads[n] && !host(n) {
				t.Errorf("%s sets %s, which neither the gateway (config.Path, config.LoadFile) nor the Functions host reads", l.where, n)
			}
		}
		// Identity-based only: never the connection-string form, never an
		// API key as a literal setting (only Key Vault references).
		for _, n := range []string{cfg.Store.Connection, cfg.Queue.Connection, cfg.Blob.Connection} {
			if set[n] {
				t.Errorf("%s sets %s, the connection-string form; use %s__… identity settings", l.where, n, n)
			}
		}
		for _, b := range cfg.Backends {
			if b.Auth.APIKeyEnv != "" && set[b.Auth.APIKeyEnv] {
				t.Errorf("%s sets API key %s as a plain setting; use keyVaultSecretSettings", l.where, b.Auth.APIKeyEnv)
			}
		}
		if l.dynamic != nil {
			t.Logf("%s: names from parameters (Key Vault references): %v", l.where, l.dynamic)
		}
		t.Logf("%s sets: %v", l.where, sortedBoolKeys(set))
	}
	for _, l := range lists {
		set := map[string]bool{}
		for _, n := range l.names {
			set[n] = true
		}
		for _, n := range sortedBoolKeys(required) {
			if !set[n] {
				t.Errorf("%s does not set %s, which the gateway requires", l.where, n)
			}
		}
	}
	t.Logf("gateway reads (derived): %v", sortedBoolKeys(reads))
	t.Logf("gateway requires in Azure mode (derived): %v", sortedBoolKeys(required))

	// The names the Bicep and the config share.
	main := files[filepath.Join(infra, "main.bicep")]
	if q := main.literalVar("queueName"); q != cfg.Queue.Name {
		t.Errorf("main.bicep creates queue %q, the config uses %q", q, cfg.Queue.Name)
	}
	if c := main.literalVar("jobBodiesContainerName"); c != cfg.Jobs.BodyContainer {
		t.Errorf("main.bicep creates job body container %q, the config uses %q", c, cfg.Jobs.BodyContainer)
	}
	if c := main.literalVar("auditContainerName"); c != cfg.Audit.Container {
		t.Errorf("main.bicep creates audit container %q, the config uses %q", c, cfg.Audit.Container)
	}
	m := regexp.MustCompile(`(?m)^param gatewayConfigPath string = '([^']*)'`).FindStringSubmatch(main.src)
	if m == nil || m[1] != ConfigFile {
		t.Errorf("main.bicep gatewayConfigPath default %v, want %q (the name in the package)", m, ConfigFile)
	}
}

// literalVar returns the value of `var name = '…'`.
func (f *bicepFile) literalVar(name string) string {
	for i, tk := range f.toks {
		if tk.firstOnLine && tk.text == "var" && f.tok(i+1).text == name && f.tok(i+3).kind == tokString {
			return strings.Trim(f.tok(i+3).text, "'")
		}
	}
	return ""
}
