package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/handlers"
	"github.com/foundry-gateway/gateway/internal/route"
)

// privateLink is what a resource type needs to be reached privately: its
// private endpoint sub-resources (group ids) and the private DNS zone of
// each, as "Azure Private Endpoint private DNS zone values" lists them
// (https://learn.microsoft.com/azure/private-link/private-endpoint-dns).
// ${storageSuffix} is environment().suffixes.storage (core.windows.net).
var privateLink = map[string]map[string][]string{
	"Microsoft.Storage/storageAccounts": {
		"table": {"privatelink.table.${storageSuffix}"},
		"blob":  {"privatelink.blob.${storageSuffix}"},
		"queue": {"privatelink.queue.${storageSuffix}"},
	},
	"Microsoft.ServiceBus/namespaces": {"namespace": {"privatelink.servicebus.windows.net"}},
	"Microsoft.KeyVault/vaults":       {"vault": {"privatelink.vaultcore.azure.net"}},
	// The Foundry / Azure OpenAI accounts (backendResourceIds).
	"Microsoft.CognitiveServices/accounts": {"account": {"privatelink.cognitiveservices.azure.com",
		"privatelink.openai.azure.com", "privatelink.services.ai.azure.com"}},
}

// resourceDecl is one resource declaration of a lexed file.
type resourceDecl struct {
	sym, typ string
	line     int
	body     []bicepToken // between the outer braces
}

func (f *bicepFile) resources() []resourceDecl {
	var out []resourceDecl
	for i, t := range f.toks {
		if t.text != "resource" || f.tok(i+1).kind != tokIdent || f.tok(i+2).kind != tokString {
			continue
		}
		typ := strings.Trim(f.tok(i+2).text, "'")
		typ, _, _ = strings.Cut(typ, "@")
		j := i + 3
		for j < len(f.toks) && f.toks[j].text != "{" {
			j++
		}
		depth, start := 0, j
		for ; j < len(f.toks); j++ {
			switch f.toks[j].text {
			case "{", "[", "(":
				depth++
			case "}", "]", ")":
				depth--
			}
			if depth == 0 {
				break
			}
		}
		out = append(out, resourceDecl{sym: f.tok(i + 1).text, typ: typ, line: t.line, body: f.toks[start:min(j+1, len(f.toks))]})
	}
	return out
}

// value returns the source text of key's value in toks (the rest of its
// line), or false.
func value(toks []bicepToken, key string) (string, bool) {
	for i, t := range toks {
		if t.kind == tokIdent && t.text == key && i+1 < len(toks) && toks[i+1].text == ":" {
			var parts []string
			for j := i + 2; j < len(toks) && toks[j].line == t.line; j++ {
				parts = append(parts, toks[j].text)
			}
			return strings.Join(parts, " "), true
		}
	}
	return "", false
}

// varString returns the string a `var name = '...'` declares in src.
func varString(src, name string) string {
	m := regexp.MustCompile(`(?m)^var ` + regexp.QuoteMeta(name) + ` = '([^']*)'`).FindStringSubmatch(src)
	if m == nil {
		return ""
	}
	return m[1]
}

// varBlock returns the text of a multi-line `var name = …` declaration.
func varBlock(src, name string) string {
	i := strings.Index(src, "\nvar "+name+" = ")
	if i < 0 {
		return ""
	}
	rest := src[i+1:]
	if j := strings.Index(rest, "\nvar "); j >= 0 {
		rest = rest[:j]
	}
	if j := strings.Index(rest, "\nresource "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// checkPrivateVariant checks the private variant of the Bicep in dir:
// every resource whose public network access can be turned off is turned
// off by privateNetworking and has, in modules/private-network.bicep, a
// private endpoint for each of its sub-resources with the right private DNS
// zone; so do the backend accounts.
func checkPrivateVariant(dir string) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	files := map[string]*bicepFile{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.bicep"))
	more, _ := filepath.Glob(filepath.Join(dir, "modules", "*.bicep"))
	for _, p := range append(paths, more...) {
		src, err := os.ReadFile(p)
		if err != nil {
			return []error{err}
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = lexBicep(p, string(src))
	}
	main, net := files["main.bicep"], files["modules/private-network.bicep"]
	if main == nil || net == nil {
		return []error{fmt.Errorf("main.bicep or modules/private-network.bicep missing")}
	}
	main.declare()

	// 1. Which types the stack makes private, and that it does.
	if !strings.Contains(main.src, "var publicAccess = privateNetworking ? 'Disabled' : 'Enabled'") {
		bad("main.bicep: want var publicAccess = privateNetworking ? 'Disabled' : 'Enabled'")
	}
	need := map[string]bool{"Microsoft.CognitiveServices/accounts": true} // backendResourceIds
	for rel, f := range files {
		for _, r := range f.resources() {
			v, ok := value(r.body, "publicNetworkAccess")
			if !ok {
				continue
			}
			if _, known := privateLink[r.typ]; !known {
				bad("%s:%d: %s (%s) sets publicNetworkAccess but has no private endpoint mapping", rel, r.line, r.sym, r.typ)
				continue
			}
			need[r.typ] = true
			if v == "'Enabled'" {
				bad("%s:%d: %s keeps public network access on in the private variant", rel, r.line, r.sym)
				continue
			}
			// The module's switch must be driven by privateNetworking.
			f.declare()
			param := strings.TrimSpace(v)
			if f.syms[param] != "param" {
				bad("%s:%d: publicNetworkAccess of %s is %q, want a module param", rel, r.line, r.sym, v)
				continue
			}
			passed := false
			for i, t := range main.toks {
				if t.firstOnLine && t.text == "module" && main.mods[main.tok(i+1).text] == rel {
					if main.moduleParams(i)[param] {
						seg := main.src[strings.Index(main.src, "module "+main.tok(i+1).text+" "):]
						if strings.Contains(seg[:strings.Index(seg, "\n}\n")], param+": publicAccess") {
							passed = true
						}
					}
				}
			}
			if !passed {
				bad("main.bicep: module %s does not pass %s: publicAccess", rel, param)
			}
		}
	}

	// 2. The endpoints and their zones.
	type endpoint struct{ group, zones string }
	var eps []endpoint
	for _, m := range regexp.MustCompile(`groupId: '([a-z]+)'\s+zones: ([A-Za-z\[\]]+)`).FindAllStringSubmatch(net.src, -1) {
		eps = append(eps, endpoint{m[1], m[2]})
	}
	zoneNames := varBlock(net.src, "zoneNames")
	zonesOf := func(ref string) []string {
		var out []string
		var cfgs []string
		if strings.HasPrefix(ref, "[") {
			cfgs = []string{strings.Trim(ref, "[]")}
		} else {
			cfgs = []string{ref}
		}
		for _, c := range cfgs {
			for _, m := range regexp.MustCompile(`resourceId\('Microsoft.Network/privateDnsZones', (\w+)\)`).FindAllStringSubmatch(varBlock(net.src, c), -1) {
				if !regexp.MustCompile(`\b` + m[1] + `\b`).MatchString(zoneNames) {
					bad("private-network.bicep: zone %s is not in zoneNames, so it is never created", m[1])
				}
				out = append(out, varString(net.src, m[1]))
			}
		}
		return out
	}
	for typ := range need {
		for group, want := range privateLink[typ] {
			found := false
			for _, e := range eps {
				if e.group == group && strings.Join(zonesOf(e.zones), ",") == strings.Join(want, ",") {
					found = true
				}
			}
			if !found {
				bad("private-network.bicep: no private endpoint for %s sub-resource %q with DNS zones %v", typ, group, want)
			}
		}
	}
	for _, typ := range []string{"Microsoft.Network/privateDnsZones", "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
		"Microsoft.Network/privateEndpoints", "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"} {
		n := 0
		for _, r := range net.resources() {
			if r.typ == typ {
				n++
			}
		}
		if n == 0 {
			bad("private-network.bicep: no %s", typ)
		}
	}

	// 3. Service Bus private endpoints need Premium; the app integrates
	// with the network.
	for _, want := range []string{"skuName: privateNetworking ? 'Premium'", "subnetId: privateNetworking ? network.outputs.appSubnetId"} {
		if !strings.Contains(main.src, want) {
			bad("main.bicep: want %q", want)
		}
	}
	if fa := files["modules/functionapp.bicep"]; fa == nil || !strings.Contains(fa.src, "virtualNetworkSubnetId: subnetId") {
		bad("functionapp.bicep: the site does not set virtualNetworkSubnetId")
	}
	for _, d := range []string{"Microsoft.App/environments", "Microsoft.Web/serverFarms"} {
		if !strings.Contains(net.src, d) {
			bad("private-network.bicep: no subnet delegation to %s", d)
		}
	}
	return errs
}

func TestBicepPrivateVariant(t *testing.T) {
	infra := filepath.Join(repoRoot(t), "infra")
	for _, err := range checkPrivateVariant(infra) {
		t.Error(err)
	}
	// The check catches what it is for, on broken copies.
	tests := []struct {
		name, file, old, new, want string
	}{
		{"no vault endpoint", "modules/private-network.bicep", "groupId: 'vault'", "groupId: 'vaultx'", `sub-resource "vault"`},
		{"wrong queue zone", "modules/private-network.bicep", "var queueZone = 'privatelink.queue.", "var queueZone = 'privatelink.queues.", `"queue"`},
		{"zone never created", "modules/private-network.bicep", "    queueZone\n    serviceBusZone", "    serviceBusZone", "queueZone is not in zoneNames"},
		{"storage stays public", "main.bicep", "    tableAdminPrincipalId: tableAdminPrincipalId\n    publicNetworkAccess: publicAccess", "    tableAdminPrincipalId: tableAdminPrincipalId", "does not pass publicNetworkAccess"},
		{"service bus hard-coded public", "modules/servicebus.bicep", "publicNetworkAccess: publicNetworkAccess", "publicNetworkAccess: 'Enabled'", "keeps public network access on"},
		{"standard service bus", "main.bicep", "skuName: privateNetworking ? 'Premium'", "skuName: privateNetworking ? 'Standard'", "Premium"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			copyInfra(t, infra, dir)
			p := filepath.Join(dir, filepath.FromSlash(tt.file))
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), tt.old) {
				t.Fatalf("%s no longer contains %q: update the test", tt.file, tt.old)
			}
			if err := os.WriteFile(p, []byte(strings.Replace(string(src), tt.old, tt.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, e := range checkPrivateVariant(dir) {
				msgs = append(msgs, e.Error())
			}
			if all := strings.Join(msgs, "\n"); !strings.Contains(all, tt.want) {
				t.Errorf("want a finding containing %q, got:\n%s", tt.want, all)
			}
		})
	}
}

func copyInfra(t *testing.T, from, to string) {
	t.Helper()
	for _, sub := range []string{"", "modules"} {
		if err := os.MkdirAll(filepath.Join(to, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		ps, _ := filepath.Glob(filepath.Join(from, sub, "*.bicep"))
		for _, p := range ps {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(to, sub, filepath.Base(p)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// statuses is a fixed backend status list.
type statuses []route.BackendStatus

func (s statuses) Status() []route.BackendStatus { return s }

// TestFrontDoorProbeServed: the path and method Front Door probes
// (modules/frontdoor.bicep, not overridden by multiregion.bicep) are served
// by the gateway's router, with a readiness answer: 200 when ready, 503 when
// the store is down or every backend circuit is open.
func TestFrontDoorProbeServed(t *testing.T) {
	infra := filepath.Join(repoRoot(t), "infra")
	src, err := os.ReadFile(filepath.Join(infra, "modules", "frontdoor.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	path := regexp.MustCompile(`(?m)^param probePath string = '([^']+)'`).FindSubmatch(src)
	method := regexp.MustCompile(`probeRequestType: '([A-Z]+)'`).FindSubmatch(src)
	if path == nil || method == nil || !strings.Contains(string(src), "probePath: probePath") {
		t.Fatal("frontdoor.bicep: want param probePath with a default, used as probePath, and a literal probeRequestType")
	}
	multi, err := os.ReadFile(filepath.Join(infra, "multiregion.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(multi), "probePath:") {
		t.Fatal("multiregion.bicep overrides probePath: check that path instead")
	}
	later, earlier := time.Now().Add(time.Minute), time.Now().Add(-time.Second)
	closed := route.BackendStatus{Name: "a", Circuit: "closed"}
	open := route.BackendStatus{Name: "b", Circuit: "open", CircuitUntil: &later}
	due := route.BackendStatus{Name: "c", Circuit: "open", CircuitUntil: &earlier}
	tests := []struct {
		name     string
		ready    error
		backends statuses
		want     int
	}{
		{"ready", nil, statuses{closed, open}, 200},
		{"store down", fmt.Errorf("no store"), statuses{closed}, 503},
		{"every circuit open", nil, statuses{open, open}, 503},
		// Past openFor the next call is the probe: ready, or a drained
		// region would never get the call that closes its circuit.
		{"open circuit due its probe", nil, statuses{open, due}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := handlers.New(handlers.Deps{
				Log:      slog.New(slog.DiscardHandler),
				Ready:    func(context.Context) error { return tt.ready },
				Backends: tt.backends,
			})
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(string(method[1]), srv.URL+string(path[1]), nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s: got %d %s, want %d", method[1], path[1], resp.StatusCode, b, tt.want)
			}
		})
	}
}

// TestBicepMultiRegion: multiregion.bicep deploys main.bicep once per
// region, each with its own region's backend, the later regions on the
// first region's tables (with a role there), behind one Front Door whose
// origins are every regional gateway.
func TestBicepMultiRegion(t *testing.T) {
	infra := filepath.Join(repoRoot(t), "infra")
	files, errs := lintBicepDir(t, infra)
	for _, err := range errs {
		t.Error(err)
	}
	m := files[filepath.Join(infra, "multiregion.bicep")]
	if m == nil {
		t.Fatal("infra/multiregion.bicep missing")
	}
	checks := []struct{ name, want string }{
		{"subscription scope (a resource group per region)", "targetScope = 'subscription'"},
		{"regions list", "param regions array"},
		{"a stack per later region", "module secondaryStacks 'main.bicep' = [for (r, i) in secondaries:"},
		{"each region on its own backend", "foundryEndpoint: r.foundryEndpoint"},
		{"its own backend's region (residency rules)", "foundryRegion: r.foundryRegion"},
		{"shared tables", "sharedTableServiceUri: primaryStack.outputs.storageTableEndpoint"},
		{"table role for the other regions", "principalId: secondaryStacks[i].outputs.identityPrincipalId"},
		{"front door over every gateway", "secondaryHostNames: [for (r, i) in secondaries:"},
		{"priority or latency", "routing: frontDoorRouting"},
	}
	for _, c := range checks {
		if !strings.Contains(m.src, c.want) {
			t.Errorf("%s: multiregion.bicep lacks %q", c.name, c.want)
		}
	}
	// The example parameters name only declared params and give the
	// required ones.
	raw, err := os.ReadFile(filepath.Join(infra, "multiregion.parameters.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pf struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(raw, &pf); err != nil {
		t.Fatal(err)
	}
	for p := range pf.Parameters {
		if _, ok := m.params[p]; !ok {
			t.Errorf("multiregion.parameters.example.json sets %s, which multiregion.bicep does not declare", p)
		}
	}
	for p, hasDefault := range m.params {
		if _, ok := pf.Parameters[p]; !ok && !hasDefault {
			t.Errorf("multiregion.parameters.example.json does not set %s, which multiregion.bicep requires", p)
		}
	}
	fd := files[filepath.Join(infra, "modules", "frontdoor.bicep")]
	for _, want := range []string{"priority: routing == 'Priority' ? i + 1 : 1", "additionalLatencyInMilliseconds: routing == 'Latency'",
		"originHostHeader: host", "forwardingProtocol: 'HttpsOnly'"} {
		if fd == nil || !strings.Contains(fd.src, want) {
			t.Errorf("frontdoor.bicep lacks %q", want)
		}
	}
	// Caching would replay one caller's completion to another.
	if fd != nil && strings.Contains(fd.src, "cacheConfiguration") {
		t.Error("frontdoor.bicep: routes must not cache")
	}
}
