package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelpShown: --help was asked for and printed; the command exits 0.
var errHelpShown = errors.New("help shown")

// subcommand is one subcommand of a [group] (keys create, usage report, …).
// Each has its own flag set: `handler keys list -h` shows only list's flags.
type subcommand struct {
	name string
	// args is the synopsis after the name, e.g. "ID [--json]".
	args  string
	about string
	// minArgs and maxArgs bound the positional arguments (maxArgs -1: any).
	minArgs, maxArgs int
	// flags declares the subcommand's flags on fs and returns what runs
	// it once they are parsed, with the positional arguments.
	flags func(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error
}

// group is a command made of subcommands.
type group struct {
	name string
	subs []subcommand
}

// summary is the group's lines in `handler --help`.
func (g group) summary() string {
	var b strings.Builder
	for _, s := range g.subs {
		line := "  handler " + g.name + " " + s.name
		if s.args != "" {
			line += " " + s.args
		}
		if len(line) < 48 {
			fmt.Fprintf(&b, "%-48s%s\n", line, s.about)
		} else {
			fmt.Fprintf(&b, "%s\n%48s%s\n", line, "", s.about)
		}
	}
	return b.String()
}

func (g group) names() string {
	var n []string
	for _, s := range g.subs {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

// run dispatches to the subcommand named by args[0].
func (g group) run(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "Usage:\n%s", g.summary())
		return usageError{fmt.Sprintf("%s: want a subcommand: %s", g.name, g.names())}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage:\n%s\n`handler %s SUBCOMMAND --help` shows its flags.\n", g.summary(), g.name)
		return errHelpShown
	}
	for _, s := range g.subs {
		if s.name != args[0] {
			continue
		}
		name := g.name + " " + s.name
		fs := newFlagSet(name)
		runSub := s.flags(fs)
		pos, err := parseFlags(fs, args[1:], e.stdout, name+" "+s.args, s.about)
		if err != nil {
			return err
		}
		switch {
		case len(pos) < s.minArgs:
			return usageError{fmt.Sprintf("%s: want %s (see handler %s --help)", name, s.args, name)}
		case s.maxArgs >= 0 && len(pos) > s.maxArgs:
			return usageError{fmt.Sprintf("%s: unexpected argument %q (see handler %s --help)", name, pos[s.maxArgs], name)}
		}
		return runSub(ctx, e, pos)
	}
	return usageError{fmt.Sprintf("%s: unknown subcommand %q: want %s", g.name, args[0], g.names())}
}

// newFlagSet returns a flag set that prints nothing by itself: parseFlags
// prints help to stdout and leaves errors to the caller.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses flags that may come before or after positional
// arguments (handler keys revoke <id> --json) and returns the positionals.
// -h / --help prints the command's synopsis and flags to stdout and
// returns errHelpShown; a bad flag is a usageError naming the command.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, about string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: handler %s\n", strings.TrimSpace(synopsis))
			if about != "" {
				fmt.Fprintf(stdout, "\n%s\n", about)
			}
			if hasFlags(fs) {
				fmt.Fprintln(stdout, "\nFlags:")
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				fs.SetOutput(io.Discard)
			}
			return nil, errHelpShown
		}
		if err != nil {
			return nil, usageError{fmt.Sprintf("%s: %v (see handler %s --help)", fs.Name(), err, fs.Name())}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseSimple parses a command without subcommands that takes no
// positional arguments.
func parseSimple(fs *flag.FlagSet, args []string, stdout io.Writer, synopsis, about string) error {
	pos, err := parseFlags(fs, args, stdout, synopsis, about)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (see handler %s --help)", fs.Name(), pos[0], fs.Name())}
	}
	return nil
}

// configFlag declares --config on fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config file (default $GATEWAY_CONFIG, else gateway.yaml)")
}
