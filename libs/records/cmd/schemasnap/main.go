// Command schemasnap releases schema versions: for each topic envelope whose resolved schema in
// schemas/ differs from its latest snapshot in schemas/versions, it writes a new snapshot with the next
// free id, provided the change is compatible both ways. It refuses incompatible changes and says why.
//
//	go run ./libs/records/cmd/schemasnap            # from the repository root
//	go generate ./...                               # from libs/records
//	go run ./libs/records/cmd/schemasnap -check     # CI: fail if a snapshot is missing
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edtech-analytics/platform/libs/records"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "schemasnap:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("schemasnap", flag.ContinueOnError)
	dir := fs.String("dir", "", "schemas directory (default: the nearest schemas/ at or above the working directory)")
	check := fs.Bool("check", false, "only report; exit 1 if a snapshot would be written")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		found, err := findSchemasDir()
		if err != nil {
			return err
		}
		*dir = found
	}
	current, err := records.ParseSources(os.DirFS(*dir))
	if err != nil {
		return fmt.Errorf("parsing sources in %s: %w", *dir, err)
	}
	catalog, err := records.LoadCatalog(os.DirFS(*dir))
	if err != nil {
		return fmt.Errorf("loading snapshots in %s: %w", *dir, err)
	}
	plan, err := catalog.Plan(current)
	if err != nil {
		return fmt.Errorf("refusing to snapshot incompatible changes (add only optional fields with defaults, "+
			"or move to a new topic and namespace):\n%w", err)
	}
	if len(plan) == 0 {
		fmt.Println("snapshots are up to date")
		return nil
	}
	for _, s := range plan {
		file := filepath.Join(*dir, records.VersionsDir, s.FileName())
		if *check {
			fmt.Println("missing snapshot", file)
			continue
		}
		content, err := s.FileContent()
		if err != nil {
			return err
		}
		if err := os.WriteFile(file, content, 0o644); err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
		fmt.Println("wrote", file)
	}
	if *check {
		return errors.New("snapshots are out of date: run go run ./libs/records/cmd/schemasnap")
	}
	return nil
}

// findSchemasDir returns the first schemas/ holding a versions/ folder at or above the working directory.
func findSchemasDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getting working directory: %w", err)
	}
	for {
		candidate := filepath.Join(dir, "schemas")
		if st, err := os.Stat(filepath.Join(candidate, records.VersionsDir)); err == nil && st.IsDir() {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no schemas/versions directory found above the working directory; pass -dir")
		}
		dir = parent
	}
}
