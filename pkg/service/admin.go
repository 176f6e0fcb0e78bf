package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
)

// serveAdmin registers this process's instance of the pollgrid-admin micro
// service with the verbs its service owns, plus reload, which every process
// serves for itself: the same as SIGHUP, answered with the result. stop
// removes it.
func (rt *Runtime) serveAdmin(ctx context.Context, replica string, verbs map[string]admin.Handler) (stop func(), err error) {
	if replica == "" {
		replica = telemetry.InstanceID()
	}
	srv, err := admin.NewServer(rt.NATS, admin.ServerConfig{
		Service: rt.Name, Instance: replica, Version: Version, Redact: rt.Redactor.String, Logger: rt.Logger,
	})
	if err != nil {
		return nil, err
	}
	for verb, h := range verbs {
		if err := srv.Handle(verb, h); err != nil {
			_ = srv.Stop()
			return nil, err
		}
	}
	err = srv.HandleEach(admin.VerbReload, func(context.Context, []byte) (any, error) {
		defs, err := rt.Reload(ctx)
		return reloadReply(rt, replica, srv.ID(), defs, err), nil
	})
	if err != nil {
		_ = srv.Stop()
		return nil, err
	}
	return func() {
		if err := srv.Stop(); err != nil {
			rt.Logger.Warn("stopping the admin service failed", "error", err)
		}
	}, nil
}

// reloadReply says how a reload ended; defs are what it applied (nil when
// there is no file).
func reloadReply(rt *Runtime, replica, instance string, defs *config.Definitions, err error) admin.ReloadReply {
	r := admin.ReloadReply{Service: rt.Name, Replica: replica, Instance: instance, OK: err == nil}
	if defs != nil {
		r.Source, r.Connectors, r.Enabled = defs.Source, len(defs.Connectors), defs.Enabled
	}
	if err == nil {
		return r
	}
	r.Error = fmt.Sprintf("config rejected, the catalog stays as it was: %v", err)
	var problems *config.Problems
	if errors.As(err, &problems) {
		r.Source = problems.Source
		for _, p := range problems.List {
			r.Problems = append(r.Problems, admin.Problem{Path: p.Path, Message: p.Message})
		}
	}
	return r
}
