package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newBackupCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Copy the embedded store to FILE, consistently, while runs go on",
		Long: `Backup writes a consistent copy of the embedded store (--data-dir) to FILE, which must
not exist, while a server or other commands keep using the store. To restore, stop every
process using the store and put the copy in place of stepflow.db (removing stepflow.db-wal
and stepflow.db-shm beside it). docs/operations.md has the details.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			path := g.paths(args)[0]
			if err := a.store.Backup(cmd.Context(), path); err != nil {
				return invalidErr(err)
			}
			fmt.Fprintf(g.stdout, "backed up to %s\n", path)
			return nil
		},
	}
}
