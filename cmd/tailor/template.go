package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/templates"
)

func templateCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "template",
		Usage: "check, preview and publish email templates",
		Subcommands: []*cli.Command{
			{
				Name:      "validate",
				Usage:     "check a template folder: syntax, manifest, filters, variables and a sample render",
				ArgsUsage: "DIR",
				Description: `Prints every problem as FILE:LINE: message and exits 1 when there is any, then every
warning as FILE:LINE: warning: message (html Gmail would clip, long subjects, images
without alt, http links), which do not fail validation. Nothing is fetched: content
sources render at their fallbacks, under the render budgets campaigns use. With --sample,
customer.* references are checked against that profile (a JSON object) and the manifest
defaults.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "sample", Usage: "JSON file with a representative profile"},
				},
				Action: templateValidate,
			},
			{
				Name:      "preview",
				Usage:     "render a template folder for one customer's real profile, with live content",
				ArgsUsage: "DIR",
				Description: `Reads the profile from DynamoDB, fetches the content sources (set TAILOR_CONTENT_URL for
the example templates, e.g. to a 'tailor content serve' address), prints the subject,
preheader, text and where each source's content came from, and writes the html to --out.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "customer", Aliases: []string{"c"}, Usage: "customer id of the profile (required)"},
					&cli.StringFlag{Name: "variant", Usage: "render this A/B variant (default: the one the customer is assigned)"},
					&cli.StringFlag{Name: "campaign", Value: "preview", Usage: "campaign id used for variant assignment"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the html part to this file"},
				},
				Action: templatePreview,
			},
			{
				Name:      "publish",
				Usage:     "validate a template folder and store it as an immutable version",
				ArgsUsage: "DIR",
				Description: `Stores the folder's files under the manifest's name and version in Postgres. A published
version never changes: publishing the same content again does nothing, and publishing
different content under the same version is refused (bump version in template.yaml).`,
				Action: templatePublish,
			},
		},
	})
}

// templateDir returns the one DIR argument.
func templateDir(c *cli.Context) (string, error) {
	for _, a := range c.Args().Slice()[min(1, c.NArg()):] {
		if strings.HasPrefix(a, "-") {
			return "", usagef("template %s: options go before the folder: tailor template %s [options] DIR", c.Command.Name, c.Command.Name)
		}
	}
	if c.NArg() != 1 {
		return "", usagef("template %s: want one template folder, e.g. tailor template %s templates/examples/welcome", c.Command.Name, c.Command.Name)
	}
	return c.Args().First(), nil
}

// printReport writes each error as DIR/FILE:LINE: message, then each warning as
// DIR/FILE:LINE: warning: message.
func printReport(w io.Writer, dir string, rep templates.Report) {
	for _, err := range rep.Errors {
		var se *templates.SyntaxError
		if errors.As(err, &se) {
			se := *se
			se.File = filepath.Join(dir, se.File)
			err = &se
		}
		fmt.Fprintln(w, err)
	}
	for _, warn := range rep.Warnings {
		warn.File = filepath.Join(dir, warn.File)
		fmt.Fprintln(w, warn)
	}
}

func templateValidate(c *cli.Context) error {
	dir, err := templateDir(c)
	if err != nil {
		return err
	}
	var sample map[string]any
	if path := c.String("sample"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return usageError{fmt.Errorf("--sample: %w", err)}
		}
		if err := json.Unmarshal(b, &sample); err != nil {
			return usageError{fmt.Errorf("--sample %s: want a JSON object (a profile): %w", path, err)}
		}
	}
	rep := templates.Validate(dir, templates.ValidateConfig{Sample: sample})
	printReport(c.App.Writer, dir, rep)
	if len(rep.Errors) > 0 {
		return cli.Exit(fmt.Sprintf("%s: %d problem(s), %d warning(s)", dir, len(rep.Errors), len(rep.Warnings)), exitFailure)
	}
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(c.App.Writer, "%s: ok, %d warning(s)\n", dir, len(rep.Warnings))
		return nil
	}
	fmt.Fprintf(c.App.Writer, "%s: ok\n", dir)
	return nil
}

func templatePreview(c *cli.Context) error {
	dir, err := templateDir(c)
	if err != nil {
		return err
	}
	if c.String("customer") == "" {
		return usagef("template preview: --customer ID is required")
	}
	tpl, err := templates.Load(dir)
	if err != nil {
		return err
	}
	if v := c.String("variant"); v != "" && !slices.Contains(tpl.Variants(), v) {
		if len(tpl.Variants()) == 0 {
			return usagef("--variant %q: template %s has no variants", v, tpl.Name())
		}
		return usagef("--variant %q: template %s has variants %s", v, tpl.Name(), strings.Join(tpl.Variants(), ", "))
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	prof, err := profile.NewStore(b.DynamoDB, b.Names.Profiles).Get(c.Context, c.String("customer"))
	if errors.Is(err, profile.ErrNotFound) {
		return fmt.Errorf("no profile for customer %q in %s (send events or run CDC first)", c.String("customer"), b.Names.Profiles)
	}
	if err != nil {
		return err
	}
	r := templates.NewRenderer(templates.RendererConfig{})
	data := jobs.RenderData(prof, map[string]any{"id": c.String("campaign")}, time.Now())
	data.UnsubscribeURL, data.PreferencesURL = "https://preview.invalid/unsubscribe", "https://preview.invalid/preferences"
	data.Variant = c.String("variant")
	m, err := r.Render(c.Context, tpl, data)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "template   %s v%d", m.Provenance.Template, m.Provenance.Version)
	if m.Provenance.Variant != "" {
		fmt.Fprintf(w, " variant %s", m.Provenance.Variant)
	}
	fmt.Fprintf(w, "\nsubject    %s\npreheader  %s\n", m.Subject, m.Preheader)
	names := make([]string, 0, len(m.Provenance.Sources))
	for name := range m.Provenance.Sources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		o := m.Provenance.Sources[name]
		line := "source     " + name + ": " + o.Outcome
		if o.Reason != "" {
			line += " (" + o.Reason + ")"
		}
		if o.Hash != "" {
			line += " sha256:" + o.Hash[:12]
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "\n%s\n", strings.TrimRight(m.Text, "\n"))
	if out := c.String("out"); out != "" {
		if err := os.WriteFile(out, []byte(m.HTML), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		fmt.Fprintf(w, "\nhtml (%d bytes) written to %s\n", len(m.HTML), out)
	} else {
		fmt.Fprintf(w, "\nhtml: %d bytes (use --out FILE.html to save it)\n", len(m.HTML))
	}
	return nil
}

func templatePublish(c *cli.Context) error {
	dir, err := templateDir(c)
	if err != nil {
		return err
	}
	rep := templates.Validate(dir, templates.ValidateConfig{})
	printReport(c.App.Writer, dir, rep)
	if len(rep.Errors) > 0 {
		return cli.Exit(fmt.Sprintf("%s: %d problem(s); nothing published", dir, len(rep.Errors)), exitFailure)
	}
	tpl, err := templates.Load(dir)
	if err != nil {
		return err
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	p, err := templates.NewStore(b.Pool).Publish(c.Context, tpl)
	if err != nil {
		return err
	}
	if p.Created {
		fmt.Fprintf(c.App.Writer, "published %s v%d (sha256:%s)\n", p.Name, p.Version, p.Checksum[:12])
	} else {
		fmt.Fprintf(c.App.Writer, "%s v%d is already published with this content (sha256:%s, %s): nothing to do\n",
			p.Name, p.Version, p.Checksum[:12], p.PublishedAt.Format("2006-01-02 15:04:05Z07:00"))
	}
	return nil
}
