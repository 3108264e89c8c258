package localstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/testcontainers/testcontainers-go"
	tclocalstack "github.com/testcontainers/testcontainers-go/modules/localstack"
)

// DockerImage is the LocalStack image used with BackendDocker ($TAILOR_LOCALSTACK_IMAGE overrides).
const DockerImage = "localstack/localstack:3.8"

// DockerAvailable reports whether a Docker engine answers, with the reason when it does not.
func DockerAvailable(ctx context.Context) (bool, string) {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false, "no Docker client configuration: " + err.Error()
	}
	defer p.Close()
	if err := p.Health(ctx); err != nil {
		return false, "no Docker engine answers: " + err.Error()
	}
	return true, ""
}

// startDocker runs LocalStack (Kinesis + DynamoDB, which is kinesis-mock and DynamoDB Local
// inside) through testcontainers-go. Postgres stays the private cluster.
func (s *Stack) startDocker(ctx context.Context) error {
	if ok, why := DockerAvailable(ctx); !ok {
		return fmt.Errorf("localstack: TAILOR_LOCALSTACK=docker but %s (unset it to use the npm emulators)", why)
	}
	if s.cfg.Detached {
		// testcontainers' reaper removes containers when this process exits; a detached stack
		// must outlive `tailor dev up`, and `tailor dev down` removes the container itself.
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	image := DockerImage
	if v := os.Getenv("TAILOR_LOCALSTACK_IMAGE"); v != "" {
		image = v
	}
	c, err := tclocalstack.Run(ctx, image, testcontainers.WithEnv(map[string]string{"SERVICES": "kinesis,dynamodb"}))
	if err != nil {
		return fmt.Errorf("localstack: start LocalStack container: %w", err)
	}
	s.stopC = func(ctx context.Context) error { return c.Terminate(ctx) }
	host, err := c.Host(ctx)
	if err != nil {
		return err
	}
	port, err := c.MappedPort(ctx, "4566/tcp")
	if err != nil {
		return err
	}
	endpoint := fmt.Sprintf("http://%s:%s", host, port.Port())
	s.state.Container = c.GetContainerID()
	s.state.Kinesis = Service{Emulator: EmulatorDocker, URL: endpoint}
	s.state.DynamoDB = Service{Emulator: EmulatorDocker, URL: endpoint}
	if err := waitReady(ctx, nil, "localstack kinesis", s.state.kinesisCheck); err != nil {
		return err
	}
	return waitReady(ctx, nil, "localstack dynamodb", s.state.dynamoCheck)
}

func removeContainer(ctx context.Context, id string) error {
	out, err := exec.CommandContext(ctx, "docker", "rm", "-f", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("localstack: docker rm -f %s: %w: %s", id, err, lastLines(out, 3))
	}
	return nil
}
