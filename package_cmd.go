package main

import (
	"context"
	"fmt"

	"github.com/foundry-gateway/gateway/internal/deploy"
)

func cmdPackage(_ context.Context, e env, args []string) error {
	stdout := e.stdout
	fs := newFlagSet("package")
	out := fs.String("out", "build/gateway.zip", "zip to write")
	bin := fs.String("binary", "build/linux/handler", "linux/amd64 handler binary to ship")
	cfg := fs.String("gateway-config", "infra/config/azure.yaml", "gateway config shipped as gateway.yaml")
	root := fs.String("root", ".", "repository root (host.json, functions/)")
	if err := parseSimple(fs, args, stdout, "package [--out ZIP] [--binary B] [--gateway-config FILE] [--root DIR]",
		"build the Azure Functions zip package and check it"); err != nil {
		return err
	}
	if err := deploy.Package(deploy.Options{Root: *root, Binary: *bin, Config: *cfg, Out: *out}); err != nil {
		return err
	}
	if err := deploy.Check(*out); err != nil {
		return fmt.Errorf("package check: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
