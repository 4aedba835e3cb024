package deploy

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxEntrySize bounds how much of one zip entry Check reads.
const maxEntrySize = 512 << 20

// functionName is the host's function name rule. Azure/azure-functions-host
// src/WebJobs.Script/Utility.cs, IsValidFunctionName:
//
//	new Regex(@"^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)
//
// Go's regexp has no look-behind, so the (?<!^host$) part ("host" is not a
// function name, in any case) is [ValidFunctionName]'s second condition.
var functionName = regexp.MustCompile(`(?i)^[a-z][a-z0-9_\-]{0,127}$`)

// ValidFunctionName reports whether the Functions host accepts name as a
// function (folder) name; HostFunctionMetadataProvider.ReadFunctionMetadata
// calls Utility.ValidateName on every folder holding a function.json and
// skips the function, with an error, when it fails.
func ValidFunctionName(name string) bool {
	return functionName.MatchString(name) && !strings.EqualFold(name, "host")
}

type zipEntry struct {
	data []byte
	mode uint32 // permission bits as recorded, 0 if none
	unix bool   // recorded with a Unix creator (mode bits survive unzip)
}

// Check validates the deployment package at zipPath and reports every
// problem at once:
//
//   - layout, by the host's indexing rules: exactly host.json, handler,
//     gateway.yaml and at least one <name>/function.json directly under the
//     zip root (the app root), with safe relative paths and nothing else
//     (local.settings.json in particular). The host enumerates only the
//     folders directly under the app root and reads function.json inside
//     each (Azure/azure-functions-host src/WebJobs.Script/Host/
//     HostFunctionMetadataProvider.cs, ReadFunctionsMetadata and
//     ReadFunctionMetadata); a function.json deeper down is never read, so a
//     nested layout such as functions/<name>/function.json registers zero
//     functions and is an error. Each folder name must pass
//     [ValidFunctionName] and each function.json declare at least one
//     binding ("At least one binding must be declared.", ParseFunctionMetadata);
//   - handler: recorded with a Unix mode that has the execute bits, and a
//     static linux/amd64 ELF executable;
//   - host.json: version 2.0, customHandler.description.defaultExecutablePath
//     "handler", enableProxyingHttpRequest true, extensions.http.routePrefix
//     "" (the gateway serves /openai/... itself), and an extension bundle when
//     a function uses a binding that is not built in;
//   - every function.json: one trigger; an HTTP function has exactly one
//     httpTrigger input and one http output (the condition under which the
//     host proxies the request, streaming included); a timer has a six-field
//     NCRONTAB schedule; at least one HTTP function exists;
//   - no secret-looking strings in the text files, and the Azurite
//     well-known account key nowhere, the binary included.
func Check(zipPath string) error {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("package %s: %w", zipPath, err)
	}
	defer r.Close()
	files, errs := readEntries(r.File)
	errs = append(errs, checkLayout(files)...)
	if h, ok := files[HandlerFile]; ok {
		errs = append(errs, checkHandler(h)...)
	}
	var bindingTypes []string
	var httpFunctions int
	for _, name := range sortedKeys(files) {
		if !isFunctionFile(name) {
			continue
		}
		types, isHTTP, ferrs := checkFunction(name, files[name].data)
		bindingTypes = append(bindingTypes, types...)
		if isHTTP {
			httpFunctions++
		}
		errs = append(errs, ferrs...)
	}
	if hasFunctions(files) && httpFunctions == 0 {
		errs = append(errs, errors.New("no HTTP-triggered function: the gateway needs one (gateway/function.json, httpTrigger + http output)"))
	}
	if h, ok := files[HostFile]; ok {
		errs = append(errs, checkHost(h.data, bindingTypes)...)
	}
	if c, ok := files[ConfigFile]; ok {
		errs = append(errs, checkConfig(c.data)...)
	}
	for _, name := range sortedKeys(files) {
		if name == HandlerFile {
			continue
		}
		if !utf8.Valid(files[name].data) {
			errs = append(errs, fmt.Errorf("%s: not UTF-8 text", name))
			continue
		}
		errs = append(errs, scanSecrets(name, files[name].data)...)
	}
	for _, name := range sortedKeys(files) {
		if bytes.Contains(files[name].data, []byte(azuriteAccountKey())) {
			errs = append(errs, fmt.Errorf("%s: contains the Azurite development account key; local-only settings must not be shipped", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("package %s: %w", zipPath, errors.Join(errs...))
	}
	return nil
}

func readEntries(zf []*zip.File) (map[string]zipEntry, []error) {
	files := map[string]zipEntry{}
	var errs []error
	for _, f := range zf {
		name := f.Name
		if strings.HasSuffix(name, "/") {
			continue // directory entry
		}
		if !safePath(name) {
			errs = append(errs, fmt.Errorf("%q: unsafe path (want a clean relative path with / separators)", name))
			continue
		}
		if _, dup := files[name]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate entry", name))
			continue
		}
		if f.UncompressedSize64 > maxEntrySize {
			errs = append(errs, fmt.Errorf("%s: %d bytes, more than %d", name, f.UncompressedSize64, maxEntrySize))
			continue
		}
		rc, err := f.Open()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxEntrySize+1))
		rc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		e := zipEntry{data: data, unix: f.CreatorVersion>>8 == 3}
		if e.unix {
			e.mode = uint32(f.Mode().Perm())
		}
		files[name] = e
	}
	return files, errs
}

func safePath(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) || path.Clean(name) != name {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." || el == "." {
			return false
		}
	}
	return true
}

// isFunctionFile reports whether name is <folder>/function.json directly
// under the root: the only place the host reads a function.json.
func isFunctionFile(name string) bool {
	parts := strings.Split(name, "/")
	return len(parts) == 2 && parts[1] == FunctionFile
}

// isNestedFunctionFile reports a function.json deeper than one folder: the
// host never reads it.
func isNestedFunctionFile(name string) bool {
	parts := strings.Split(name, "/")
	return len(parts) > 2 && parts[len(parts)-1] == FunctionFile
}

// functionFolders are the top-level folders that hold a function.json.
func functionFolders(files map[string]zipEntry) map[string]bool {
	dirs := map[string]bool{}
	for name := range files {
		if isFunctionFile(name) {
			dirs[strings.Split(name, "/")[0]] = true
		}
	}
	return dirs
}

func hasFunctions(files map[string]zipEntry) bool {
	for name := range files {
		if isFunctionFile(name) {
			return true
		}
	}
	return false
}

func checkLayout(files map[string]zipEntry) []error {
	var errs []error
	for _, req := range []string{HostFile, HandlerFile, ConfigFile} {
		if _, ok := files[req]; !ok {
			errs = append(errs, fmt.Errorf("%s: missing", req))
		}
	}
	if !hasFunctions(files) {
		errs = append(errs, fmt.Errorf("no <name>/%s at the zip root: the Functions host would index zero functions", FunctionFile))
	}
	fnDirs := functionFolders(files)
	for _, name := range sortedKeys(files) {
		top := strings.Split(name, "/")[0]
		switch {
		case name == HostFile || name == HandlerFile || name == ConfigFile:
		case isFunctionFile(name):
			if !ValidFunctionName(top) {
				errs = append(errs, fmt.Errorf("%s: %q is not a valid function name for the host (Utility.IsValidFunctionName: a letter, then up to 127 letters, digits, _ or -, and not \"host\")", name, top))
			}
		case isNestedFunctionFile(name):
			errs = append(errs, fmt.Errorf("%s: nested function folder; the Functions host reads function.json only in the folders directly under the app root, so this function would not be registered (want %s/%s)", name, path.Base(path.Dir(name)), FunctionFile))
		case path.Base(name) == "local.settings.json":
			errs = append(errs, fmt.Errorf("%s: local.settings.json is for Core Tools only and may hold secrets; it must not be shipped", name))
		case fnDirs[top]:
			errs = append(errs, fmt.Errorf("%s: unexpected file; a function folder holds only %s", name, FunctionFile))
		default:
			errs = append(errs, fmt.Errorf("%s: unexpected file; a package holds only %s, %s, %s and <name>/%s", name, HostFile, HandlerFile, ConfigFile, FunctionFile))
		}
	}
	return errs
}

func checkHandler(h zipEntry) []error {
	var errs []error
	switch {
	case !h.unix:
		errs = append(errs, fmt.Errorf("%s: recorded without Unix permissions, so it unpacks without the execute bit (build the zip with FileHeader.SetMode(0755))", HandlerFile))
	case h.mode&0o111 != 0o111:
		errs = append(errs, fmt.Errorf("%s: not executable (mode %#o, want 0755): the Functions host could not start it", HandlerFile, h.mode))
	}
	f, err := elf.NewFile(bytes.NewReader(h.data))
	if err != nil {
		return append(errs, fmt.Errorf("%s: not an ELF executable (build with GOOS=linux GOARCH=amd64): %w", HandlerFile, err))
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		errs = append(errs, fmt.Errorf("%s: built for %v/%v, want linux/amd64 (ELFCLASS64, EM_X86_64)", HandlerFile, f.Class, f.Machine))
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		errs = append(errs, fmt.Errorf("%s: ELF type %v is not an executable", HandlerFile, f.Type))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			errs = append(errs, fmt.Errorf("%s: dynamically linked (has an ELF interpreter): build with CGO_ENABLED=0", HandlerFile))
			break
		}
	}
	return errs
}

// hostJSON is the part of host.json that Check validates.
type hostJSON struct {
	Version       string `json:"version"`
	CustomHandler *struct {
		Description *struct {
			DefaultExecutablePath string `json:"defaultExecutablePath"`
			WorkingDirectory      string `json:"workingDirectory"`
		} `json:"description"`
		EnableProxyingHTTPRequest   bool `json:"enableProxyingHttpRequest"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP *struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
	ExtensionBundle *struct {
		ID      string `json:"id"`
		Version string `json:"version"`
	} `json:"extensionBundle"`
}

// builtinBindings need no extension bundle.
var builtinBindings = map[string]bool{"httptrigger": true, "http": true, "timertrigger": true}

func checkHost(data []byte, bindingTypes []string) []error {
	var h hostJSON
	if err := json.Unmarshal(data, &h); err != nil {
		return []error{fmt.Errorf("%s: %w", HostFile, err)}
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(HostFile+": "+format, a...))
	}
	if h.Version != "2.0" {
		bad("version %q, want \"2.0\"", h.Version)
	}
	switch {
	case h.CustomHandler == nil:
		bad("no customHandler section: the host would not start the Go handler")
	default:
		ch := h.CustomHandler
		if ch.Description == nil || ch.Description.DefaultExecutablePath != HandlerFile {
			got := ""
			if ch.Description != nil {
				got = ch.Description.DefaultExecutablePath
			}
			bad("customHandler.description.defaultExecutablePath %q, want %q (the binary in the package)", got, HandlerFile)
		}
		if ch.Description != nil && ch.Description.WorkingDirectory != "" && ch.Description.WorkingDirectory != "." {
			bad("customHandler.description.workingDirectory %q: the handler and gateway.yaml are at the app root", ch.Description.WorkingDirectory)
		}
		if !ch.EnableProxyingHTTPRequest {
			bad("customHandler.enableProxyingHttpRequest must be true: without it the host wraps HTTP requests in the JSON payload protocol and does not stream responses")
		}
		if ch.EnableForwardingHTTPRequest {
			bad("customHandler.enableForwardingHttpRequest must not be set: the gateway relies on proxying")
		}
	}
	if h.Extensions.HTTP == nil || h.Extensions.HTTP.RoutePrefix == nil || *h.Extensions.HTTP.RoutePrefix != "" {
		got := "unset (default \"api\")"
		if h.Extensions.HTTP != nil && h.Extensions.HTTP.RoutePrefix != nil {
			got = fmt.Sprintf("%q", *h.Extensions.HTTP.RoutePrefix)
		}
		bad("extensions.http.routePrefix is %s, want \"\": clients call /openai/... at the root", got)
	}
	for _, t := range bindingTypes {
		if !builtinBindings[strings.ToLower(t)] && h.ExtensionBundle == nil {
			bad("binding type %s needs an extensionBundle", t)
			break
		}
	}
	return errs
}

// functionJSON is the part of function.json that Check validates.
type functionJSON struct {
	Bindings []struct {
		Type      string   `json:"type"`
		Direction string   `json:"direction"`
		Name      string   `json:"name"`
		AuthLevel string   `json:"authLevel"`
		Methods   []string `json:"methods"`
		Schedule  string   `json:"schedule"`
	} `json:"bindings"`
}

var (
	authLevels  = map[string]bool{"anonymous": true, "function": true, "admin": true}
	httpMethods = map[string]bool{"get": true, "post": true, "put": true, "patch": true, "delete": true, "options": true, "head": true, "trace": true}
	appSetting  = regexp.MustCompile(`^%[A-Za-z_][A-Za-z0-9_]*%$`)
)

// checkFunction validates one function.json and returns its binding types
// and whether it is an HTTP function.
func checkFunction(name string, data []byte) (types []string, isHTTP bool, errs []error) {
	var fj functionJSON
	if err := json.Unmarshal(data, &fj); err != nil {
		return nil, false, []error{fmt.Errorf("%s: %w", name, err)}
	}
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(name+": "+format, a...))
	}
	if len(fj.Bindings) == 0 {
		bad("no bindings")
		return nil, false, errs
	}
	var triggers, httpIn, httpOut, others int
	names := map[string]bool{}
	for i, b := range fj.Bindings {
		types = append(types, b.Type)
		t := strings.ToLower(b.Type)
		if b.Type == "" || b.Name == "" {
			bad("binding %d needs a type and a name", i)
		}
		if names[b.Name] {
			bad("binding name %q used twice", b.Name)
		}
		names[b.Name] = true
		switch b.Direction {
		case "in", "out", "inout":
		default:
			bad("binding %q: direction %q, want in or out", b.Name, b.Direction)
		}
		if strings.HasSuffix(t, "trigger") {
			triggers++
			if b.Direction != "in" {
				bad("trigger %q must have direction in", b.Name)
			}
		}
		switch {
		case t == "httptrigger":
			httpIn++
			if b.AuthLevel != "" && !authLevels[strings.ToLower(b.AuthLevel)] {
				bad("httpTrigger authLevel %q, want anonymous, function or admin", b.AuthLevel)
			}
			for _, m := range b.Methods {
				if !httpMethods[strings.ToLower(m)] {
					bad("httpTrigger method %q is not an HTTP method", m)
				}
			}
		case t == "http" && b.Direction == "out":
			httpOut++
		case t == "timertrigger":
			if appSetting.MatchString(b.Schedule) {
				break // resolved from an app setting at run time
			}
			if err := checkNCRONTAB(b.Schedule); err != nil {
				bad("timerTrigger schedule %q: %v", b.Schedule, err)
			}
		default:
			others++
		}
	}
	if triggers != 1 {
		bad("%d trigger bindings, want exactly one", triggers)
	}
	if httpIn > 0 || httpOut > 0 {
		isHTTP = true
		if httpIn != 1 || httpOut != 1 || others > 0 {
			bad("an HTTP function needs exactly one httpTrigger input and one http output and nothing else, so that the host proxies it (found %d httpTrigger, %d http outputs, %d other bindings)", httpIn, httpOut, others)
		}
	}
	return types, isHTTP, errs
}

func checkConfig(data []byte) []error {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return []error{fmt.Errorf("%s: %w", ConfigFile, err)}
	}
	if len(m) == 0 {
		return []error{fmt.Errorf("%s: empty config", ConfigFile)}
	}
	return nil
}

func sortedKeys(m map[string]zipEntry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
