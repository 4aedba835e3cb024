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
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(exitCode(err))
	}
}

// env is what every command gets: the environment, the output streams and
// the logger (JSON on stderr).
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	log            *slog.Logger
}

// command is one top-level command of handler. Commands with subcommands
// (keys, limits, usage) dispatch through [group].
type command struct {
	name string
	// usage is the command's lines in `handler --help`.
	usage string
	run   func(ctx context.Context, e env, args []string) error
}

// commands lists every top-level command, in the order of the help text.
func commands() []command {
	return []command{
		{"serve", "  handler serve [--config FILE]                 run the gateway (Functions custom handler or standalone)\n", cmdServe},
		{"sim", "  handler sim [--listen ADDR] [--config FILE]   run the Foundry / Azure OpenAI simulator\n", cmdSim},
		{"keys", keysGroup().summary(), withStoreHint(keysGroup().run)},
		{"usage", usageGroup().summary(), withStoreHint(usageGroup().run)},
		{"limits", limitsGroup().summary(), withStoreHint(limitsGroup().run)},
		{"audit", auditGroup().summary(), auditGroup().run},
		{"smoke", "  handler smoke --url URL --key KEY [--model M] [--job-timeout 3m]\n" +
			"                                                check a deployed gateway: models, chat, stream, async job, usage report\n",
			func(ctx context.Context, e env, args []string) error {
				err := cmdSmoke(ctx, args, e.getenv, e.stdout)
				if errors.Is(err, flag.ErrHelp) {
					return errHelpShown
				}
				return err
			}},
		{"package", "  handler package [--out ZIP] [--binary B] [--gateway-config FILE]\n" +
			"                                                build the Azure Functions zip package\n", cmdPackage},
		{"version", "  handler version [--json]                      version, commit and Go version of this binary\n", cmdVersion},
	}
}

func usageText() string {
	var b strings.Builder
	b.WriteString("handler — Foundry Gateway\n\nUsage:\n")
	for _, c := range commands() {
		b.WriteString(c.usage)
	}
	b.WriteString("\nThe config file is --config, else $GATEWAY_CONFIG, else gateway.yaml. The keys,\n" +
		"limits and usage commands need only its store and models sections, so in Azure\n" +
		"they need only GatewayTables__tableServiceUri (and az login).\n" +
		"`handler COMMAND --help` shows a command's flags.\n")
	return b.String()
}

// usageError is a mistake in the command line: exit status 2.
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
		fmt.Fprint(stderr, usageText())
		return usageError{"missing command"}
	}
	e := env{getenv: getenv, stdout: stdout, stderr: stderr,
		log: slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: logLevel(getenv("GATEWAY_LOG_LEVEL"))}))}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText())
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			if errors.Is(err, errHelpShown) {
				return nil
			}
			return err
		}
	}
	fmt.Fprint(stderr, usageText())
	return usageError{"unknown command " + args[0]}
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// withStoreHint adds storeHint to a command's error.
func withStoreHint(run func(ctx context.Context, e env, args []string) error) func(ctx context.Context, e env, args []string) error {
	return func(ctx context.Context, e env, args []string) error { return storeHint(run(ctx, e, args)) }
}

// storeHint adds what to do to the errors an operator meets first in Azure:
// a table call refused for lack of a data role (shared keys are disabled,
// so Owner or Contributor on the account is not enough), or no credential.
func storeHint(err error) error {
	if err == nil || errors.Is(err, errHelpShown) {
		return err
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
