package pollgridv1_test

import (
	"context"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// TestGeneratedCodeIsFresh compiles pollgrid.proto and compares it with the
// descriptor embedded in the committed pollgrid.pb.go: when someone edits the
// .proto without running `make proto`, this fails.
func TestGeneratedCodeIsFresh(t *testing.T) {
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{"../.."}}),
	}
	files, err := compiler.Compile(context.Background(), "pollgrid/v1/pollgrid.proto")
	require.NoError(t, err)
	fromSource := protodesc.ToFileDescriptorProto(files[0])
	generated := protodesc.ToFileDescriptorProto(pollgridv1.File_pollgrid_v1_pollgrid_proto)
	// protoc-gen-go strips source info; compare the schema itself.
	fromSource.SourceCodeInfo, generated.SourceCodeInfo = nil, nil
	require.True(t, proto.Equal(fromSource, generated),
		"proto/pollgrid/v1/pollgrid.pb.go is stale: run `make proto` and commit the result\nsource:    %v\ngenerated: %v",
		fromSource, generated)
}
