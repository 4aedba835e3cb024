// Command handler is Foundry Gateway: one binary that is the Azure Functions
// custom handler (`handler serve`), a Foundry / Azure OpenAI simulator
// (`handler sim`) and the operator CLI (`handler keys …`, `handler package`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "handler:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usageText = `handler — Foundry Gateway

Usage:
  handler serve [--config FILE]                 run the gateway (Functions custom handler or standalone)
  handler sim [--listen ADDR] [--config FILE]   run the Foundry / Azure OpenAI simulator
  handler keys create --team T --app A [--models M,..] [--regions R,..] [--class interactive|batch]
                    [--max-output-tokens N] [--over-cap clamp|reject] [--max-n N] [--admin]
                    [--expires-in 90d | --expires-at TIME] [--json | --secret-only]
                                                create an API key (printed once)
  handler keys list [--team T] [--json]         list keys (never the secrets)
  handler keys get ID [--json]                  show one key (ID or its fgw-<id> prefix)
  handler keys rotate ID [--overlap 24h] [--expires-in D]
                                                new key, same scope; the old one works for the overlap
  handler keys revoke ID                        revoke a key (every instance within auth.keyCacheTTL)
  handler usage report [--from D] [--to D] [--by team,app,model,class,date] [--format table|csv|json] [--team T]
                                                usage and cost per team/app/model/day
  handler usage rebuild --day D                 recompute a day's sums from UsageEvents (streams; bounded memory)
  handler limits set --key ID|--app A|--team T [--rpm N] [--tpm N] [--monthly-tokens N]
  handler limits list | delete                  per-key/app/team limit overrides
  handler smoke --url URL --key KEY [--model M] [--job-timeout 3m]
                                                check a deployed gateway: models, chat, stream, async job, usage report
  handler package --out ZIP [--binary B] [--gateway-config FILE]
                                                build the Azure Functions zip package

The config file is --config, else $GATEWAY_CONFIG, else gateway.yaml. The keys,
limits and usage commands read only its store and models sections, so in Azure
they need only GatewayTables__tableServiceUri (and az login).
`

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return usageError{"missing command"}
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: logLevel(getenv("GATEWAY_LOG_LEVEL"))}))
	switch args[0] {
	case "serve":
		if getenv("GATEWAY_LOG_BUFFER") != "off" {
			lb := newLogBuffer(stderr, logFlushInterval)
			defer lb.Close()
			log = slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: logLevel(getenv("GATEWAY_LOG_LEVEL"))}))
		}
		return cmdServe(ctx, args[1:], getenv, log)
	case "sim":
		return cmdSim(ctx, args[1:], log, stdout)
	case "keys":
		return storeHint(cmdKeys(ctx, args[1:], getenv, stdout))
	case "usage":
		return storeHint(cmdUsage(ctx, args[1:], getenv, stdout))
	case "limits":
		return storeHint(cmdLimits(ctx, args[1:], getenv, stdout))
	case "package":
		return cmdPackage(args[1:], stdout)
	case "smoke":
		return cmdSmoke(ctx, args[1:], getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return usageError{"unknown command " + args[0]}
}

// storeHint adds what to do to the errors an operator meets first in Azure:
// a table call refused for lack of a data role (shared keys are disabled,
// so Owner or Contributor on the account is not enough), or no credential.
func storeHint(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "AuthorizationPermissionMismatch") || strings.Contains(msg, "AuthorizationFailure"):
		return fmt.Errorf("%w\nhint: your identity needs Storage Table Data Contributor on the storage account "+
			"(infra/main.bicep grants it to the deployer unless grantDeployerTableAccess=false; docs/azure.md, First hour in Azure)", err)
	case strings.Contains(msg, "DefaultAzureCredential"):
		return fmt.Errorf("%w\nhint: sign in with `az login` (or set GatewayTables to a connection string)", err)
	}
	return err
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
