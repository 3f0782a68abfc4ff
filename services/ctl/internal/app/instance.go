package app

import (
	"context"
	"fmt"

	"github.com/edtech-analytics/platform/libs/tenancy/fleet"
)

func runInstanceAdd(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "instance add", "--name NAME --url-env VAR [--default]")
	name := fs.String("name", "", "instance name: 1-63 of a-z, 0-9, _ and -")
	urlEnv := fs.String("url-env", "", "environment variable holding the instance's PostgreSQL URL in every process that uses it (the URL is never stored)")
	def := fs.Bool("default", false, "place new districts on this instance")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	if err := required(fs, "name", "url-env"); err != nil {
		return err
	}
	if err := fleet.ValidInstanceName(*name); err != nil {
		return usagef("--name: %w", err)
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		in, err := cp.fleet.AddInstance(ctx, *name, *urlEnv, *def)
		if err != nil {
			return err
		}
		if _, err := cp.audit.Append(ctx, "ctl", "", "instance.add", in); err != nil {
			return err
		}
		if c.output == "json" {
			return writeJSON(e.Stdout, in)
		}
		_, err = fmt.Fprintf(e.Stdout, "added instance %s (url from $%s, default %v)\n", in.Name, in.URLEnv, in.Default)
		return err
	})
}

func runInstanceList(ctx context.Context, e Env, args []string) error {
	fs, c := newFlags(e, "instance list", "")
	if err := parse(fs, c, args); err != nil {
		return err
	}
	return withControl(ctx, e, c, func(cp controlPlane) error {
		list, err := cp.fleet.Instances(ctx)
		if err != nil {
			return err
		}
		return writeList(e.Stdout, c.output, list, []string{"NAME", "URL", "DEFAULT", "CREATED"},
			func(in fleet.Instance) []string {
				url := "$" + in.URLEnv
				if in.Name == fleet.MainInstance {
					url = "(control database)"
				}
				return []string{in.Name, url, fmt.Sprint(in.Default), formatTime(&in.CreatedAt)}
			})
	})
}
