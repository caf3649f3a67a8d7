// Command nexxus-stream is the Go proof of the generated gRPC client
// (protoc-gen-go + protoc-gen-go-grpc via buf.gen.yaml): it signs in, registers
// a device, opens EventService.StreamEvents on a model, creates an object and
// prints the event it receives for it.
//
//	nexxus-stream '{"target": "127.0.0.1:8080", "appId": "...", "login": "alice",
//	                "password": "...", "model": "task", "objectId": "x1",
//	                "data": {"title": "hi"}}'
//
// `target` is Envoy (gRPC passes through it). Prints "READY <json>",
// "CREATED <json>" and "RESULT <json>" lines; exits 0, or 1 with the error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	nexxus "example.com/nexxus/clients/go/gen/nexxus/v1"
)

type args struct {
	Target   string         `json:"target"`
	AppID    string         `json:"appId"`
	Login    string         `json:"login"`
	Password string         `json:"password"`
	Model    string         `json:"model"`
	ObjectID string         `json:"objectId"`
	Data     map[string]any `json:"data"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nexxus-stream failed: %v\n", err)
		os.Exit(1)
	}
}

func emit(tag string, value any) {
	line, _ := json.Marshal(value)
	fmt.Printf("%s %s\n", tag, line)
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func run() error {
	var a args
	if len(os.Args) < 2 {
		return errors.New("usage: nexxus-stream '<json arguments>'")
	}
	if err := json.Unmarshal([]byte(os.Args[1]), &a); err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conn, err := grpc.NewClient(a.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()

	login, err := nexxus.NewUserServiceClient(conn).Login(ctx, &nexxus.LoginRequest{
		AppId: a.AppID, Login: a.Login, Password: a.Password,
	})
	if err != nil {
		return fmt.Errorf("Login: %w", err)
	}
	device, err := nexxus.NewDeviceServiceClient(conn).RegisterDevice(
		bearer(ctx, login.GetTokens().GetAccessToken()),
		&nexxus.RegisterDeviceRequest{AppId: a.AppID, Name: "go-client", Platform: "server", Transport: "grpc"},
	)
	if err != nil {
		return fmt.Errorf("RegisterDevice: %w", err)
	}
	authed := bearer(ctx, device.GetTokens().GetAccessToken())

	stream, err := nexxus.NewEventServiceClient(conn).StreamEvents(authed, &nexxus.StreamEventsRequest{
		AppId:            a.AppID,
		Subscriptions:    []*nexxus.CreateSubscriptionRequest{{Model: a.Model}},
		HeartbeatSeconds: 5,
	})
	if err != nil {
		return fmt.Errorf("StreamEvents: %w", err)
	}
	data, err := structpb.NewStruct(a.Data)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	objects := nexxus.NewObjectServiceClient(conn)
	for {
		frame, err := stream.Recv()
		if err == io.EOF {
			return errors.New("stream ended before the event")
		}
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		switch f := frame.GetFrame().(type) {
		case *nexxus.StreamEventsResponse_Ready:
			ids := []string{}
			for _, s := range f.Ready.GetSubscriptions() {
				ids = append(ids, s.GetId())
			}
			emit("READY", map[string]any{"deviceId": f.Ready.GetDeviceId(), "subscriptions": ids})
			created, err := objects.CreateObject(authed, &nexxus.CreateObjectRequest{
				AppId: a.AppID, Model: a.Model, ObjectId: a.ObjectID, Data: data, Wait: true,
			})
			if err != nil {
				return fmt.Errorf("CreateObject: %w", err)
			}
			emit("CREATED", map[string]any{"operationId": created.GetOperation().GetOperationId()})
		case *nexxus.StreamEventsResponse_Event:
			if done, err := report(f.Event, a.ObjectID); done || err != nil {
				return err
			}
		case *nexxus.StreamEventsResponse_Batch:
			for _, e := range f.Batch.GetEvents() {
				if done, err := report(e, a.ObjectID); done || err != nil {
					return err
				}
			}
		case *nexxus.StreamEventsResponse_Error:
			return fmt.Errorf("stream error %s: %s", f.Error.GetCode(), f.Error.GetMessage())
		}
	}
}

// report prints the RESULT line for the event of the object we created.
func report(e *nexxus.Event, objectID string) (bool, error) {
	if e.GetObjectId() != objectID {
		return false, nil
	}
	raw, err := protojson.Marshal(e.GetObject().GetData())
	if err != nil {
		return true, err
	}
	emit("RESULT", map[string]any{
		"kind":        e.GetKind().String(),
		"objectId":    e.GetObjectId(),
		"version":     fmt.Sprint(e.GetVersion()),
		"operationId": e.GetOperationId(),
		"data":        json.RawMessage(raw),
	})
	return true, nil
}
