package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// ClusterName is the name a Cluster's servers know it by (remote_servers, ON CLUSTER).
const ClusterName = "edtech"

// Cluster is a sharded, replicated ClickHouse cluster of private servers on loopback, coordinated by a
// private ZooKeeper: the layout a platform team runs, small enough for a test. Each shard's replicas
// hold the same ReplicatedMergeTree tables; a node's macros name its shard and replica ({shard},
// {replica}), so that one CREATE TABLE ... ON CLUSTER serves every node.
//
// A node keeps its ports for its life: every node's remote_servers lists them, so Kill and Start bring a
// node back where the others look for it.
type Cluster struct {
	Dir       string // everything lives here: zookeeper/ and node-<shard>-<replica>/
	ZooKeeper string // host:port of ZooKeeper's client port
	Nodes     []*ClusterNode

	zkPID int
	bin   string
}

// ClusterNode is one ClickHouse server of a Cluster.
type ClusterNode struct {
	Shard, Replica int    // from 1
	Addr           string // native protocol, host:port
	HTTPAddr       string // HTTP interface, host:port
	tcp, http, srv int
	base           string
	pid            int
	done           <-chan error // how the running process ended, once it has
}

// Name is the node's replica name: r<shard>-<replica>.
func (n *ClusterNode) Name() string { return fmt.Sprintf("r%d-%d", n.Shard, n.Replica) }

// ErrorLog is the path of the node's error log, which outlives its process.
func (n *ClusterNode) ErrorLog() string { return filepath.Join(n.base, "server.err.log") }

// zkJar is the ZooKeeper server of Debian's zookeeper package; its manifest names its dependencies.
const zkJar = "/usr/share/java/zookeeper.jar"

// zkConfig is a standalone ZooKeeper for tests: short ticks, loopback only, no admin server.
const zkConfig = `tickTime=500
initLimit=10
syncLimit=5
dataDir={{.Data}}
clientPort={{.Port}}
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
`

// clusterNodeConfig is chConfig with what a replicated, sharded server needs: ZooKeeper, the node's
// macros, the cluster's servers and the interserver port its replicas fetch parts through.
const clusterNodeConfig = `<?xml version="1.0"?>
<!-- Written by libs/testenv/devenv: one server of a private loopback ClickHouse cluster. -->
<yandex>` + chServer + `    <tcp_port>{{.Node.TCP}}</tcp_port>
    <http_port>{{.Node.HTTP}}</http_port>
    <interserver_http_port>{{.Node.Srv}}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{{.ZKPort}}</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <!-- A server killed in the middle of an insert keeps the part it wrote but never committed in ZooKeeper.
         On start it detaches such parts, unless they hold more than this share of a table's rows: then it
         refuses to start. A small table (kafka_offsets_local, a merged rollup) easily passes the default of
         0.5 with one part, so the share is not limited (ADR 0026). -->
    <merge_tree><replicated_max_ratio_of_wrong_parts>1</replicated_max_ratio_of_wrong_parts></merge_tree>
    <macros>
        <shard>{{.Node.Shard}}</shard>
        <replica>{{.Node.Name}}</replica>
    </macros>
    <remote_servers>
        <{{.Cluster}}>{{range .Shards}}
            <shard>
                <internal_replication>true</internal_replication>{{range .}}
                <replica><host>127.0.0.1</host><port>{{.TCP}}</port></replica>{{end}}
            </shard>{{end}}
        </{{.Cluster}}>
    </remote_servers>
</yandex>
`

// StartCluster starts ZooKeeper and shards × replicas ClickHouse servers under dir and waits until every
// server answers and reaches ZooKeeper. Stop ends them all. It needs Debian's zookeeper package (and a
// Java runtime) besides ClickHouse: `make deps` installs both.
func StartCluster(ctx context.Context, dir string, shards, replicas int) (*Cluster, error) {
	bin, err := chBinary()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(zkJar); err != nil {
		return nil, fmt.Errorf("zookeeper not found at %s: run `make deps` as root on Debian/Ubuntu: %w", zkJar, ErrNotInstalled)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("java not found (Debian's zookeeper package needs a Java runtime): %w", ErrNotInstalled)
	}
	c := &Cluster{Dir: dir, bin: bin}
	if err := c.startZooKeeper(ctx, java); err != nil {
		return nil, errors.Join(err, c.Stop(ctx))
	}
	var taken []int
	for s := 1; s <= shards; s++ {
		for r := 1; r <= replicas; r++ {
			n := &ClusterNode{Shard: s, Replica: r}
			n.base = filepath.Join(dir, "node-"+strings.TrimPrefix(n.Name(), "r"))
			for _, port := range []*int{&n.tcp, &n.http, &n.srv} {
				if *port, err = freePort(ctx, 0, taken...); err != nil {
					return nil, errors.Join(err, c.Stop(ctx))
				}
				taken = append(taken, *port)
			}
			n.Addr, n.HTTPAddr = loopback(n.tcp), loopback(n.http)
			c.Nodes = append(c.Nodes, n)
		}
	}
	for _, n := range c.Nodes {
		if err := c.writeNodeConfig(n, shards); err != nil {
			return nil, errors.Join(err, c.Stop(ctx))
		}
	}
	for i := range c.Nodes {
		if err := c.launch(ctx, i); err != nil {
			return nil, errors.Join(err, c.Stop(ctx))
		}
	}
	for i := range c.Nodes {
		if err := c.waitOrRelaunch(ctx, i); err != nil {
			return nil, errors.Join(err, c.Stop(ctx))
		}
	}
	return c, nil
}

// Addrs lists every node's native address, shard by shard.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Kill SIGKILLs node i and waits until it has released its data directory.
func (c *Cluster) Kill(ctx context.Context, i int) error {
	n := c.Nodes[i]
	if n.pid == 0 {
		return nil
	}
	if err := syscall.Kill(n.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", n.Name(), n.pid, err)
	}
	n.pid = 0
	status := filepath.Join(n.base, "data", "status")
	return waitFor(ctx, 30*time.Second, func(context.Context) error { return unlocked(status) }, nil)
}

// Start starts node i again, on its ports, and waits until it answers.
func (c *Cluster) Start(ctx context.Context, i int) error {
	if c.Nodes[i].pid != 0 {
		return nil
	}
	if err := c.launch(ctx, i); err != nil {
		return err
	}
	return c.waitOrRelaunch(ctx, i)
}

// waitOrRelaunch waits for node i and, if it exited while starting, starts it again: a server killed a
// moment ago can leave what makes the next start fail for a moment (up to three starts).
func (c *Cluster) waitOrRelaunch(ctx context.Context, i int) error {
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		err := c.wait(ctx, i)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if !errors.Is(err, errExited) || ctx.Err() != nil {
			break
		}
		c.Nodes[i].pid = 0
		if err := c.launch(ctx, i); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(errs...)
}

// Stop ends every server of the cluster and ZooKeeper.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes {
		if n.pid != 0 && alive(n.pid, "clickhouse") {
			errs = append(errs, terminate(ctx, n.pid, "clickhouse", 30*time.Second))
		}
		n.pid = 0
	}
	if c.zkPID != 0 && alive(c.zkPID, "zookeeper") {
		errs = append(errs, terminate(ctx, c.zkPID, "zookeeper", 10*time.Second))
	}
	c.zkPID = 0
	return errors.Join(errs...)
}

func (c *Cluster) startZooKeeper(ctx context.Context, java string) error {
	base := filepath.Join(c.Dir, "zookeeper")
	data := filepath.Join(base, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", data, err)
	}
	tmpl := template.Must(template.New("zoo.cfg").Parse(zkConfig))
	// Up to three starts, each on a fresh port, as for a single ClickHouse server.
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort(ctx, 0)
		if err != nil {
			return err
		}
		var cfg bytes.Buffer
		if err := tmpl.Execute(&cfg, struct {
			Data string
			Port int
		}{data, port}); err != nil {
			return fmt.Errorf("rendering zoo.cfg: %w", err)
		}
		cfgPath := filepath.Join(base, "zoo.cfg")
		if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing zoo.cfg: %w", err)
		}
		pid, done, err := startDetached(ctx, java, base, filepath.Join(base, "stdout.log"), "-Xmx256m",
			"-Dzookeeper.log.dir="+base, "-cp", "/etc/zookeeper/conf:"+zkJar,
			"org.apache.zookeeper.server.ZooKeeperServerMain", cfgPath)
		if err != nil {
			return fmt.Errorf("starting zookeeper: %w", err)
		}
		c.zkPID, c.ZooKeeper = pid, loopback(port)
		err = waitFor(ctx, 60*time.Second, func(ctx context.Context) error { return zkAnswers(ctx, c.ZooKeeper) }, exitedOf(done, "zookeeper"))
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: waiting for zookeeper on %s: %w\n%s", attempt, c.ZooKeeper, err, tail(filepath.Join(base, "stdout.log"), 10)))
		if !errors.Is(err, errExited) {
			return errors.Join(errs...) // running but not answering
		}
		c.zkPID = 0
	}
	return errors.Join(errs...)
}

// zkAnswers asks ZooKeeper for its status (the srvr command) and expects it to serve clients: ruok answers
// imok before the server takes sessions, and a ClickHouse 18.16 server that cannot open its session when
// it starts crashes in its DDL worker.
func zkAnswers(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // a probe: nothing written through it remains to flush
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("Mode: standalone")) {
		return fmt.Errorf("zookeeper is not serving yet: %q", b)
	}
	return nil
}

func (c *Cluster) writeNodeConfig(n *ClusterNode, shards int) error {
	for _, d := range []string{n.base, filepath.Join(n.base, "data"), filepath.Join(n.base, "tmp"),
		filepath.Join(n.base, "user_files"), filepath.Join(n.base, "format_schemas")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	type port struct{ TCP int }
	byShard := make([][]port, shards)
	for _, m := range c.Nodes {
		byShard[m.Shard-1] = append(byShard[m.Shard-1], port{m.tcp})
	}
	_, zkPort, err := net.SplitHostPort(c.ZooKeeper)
	if err != nil {
		return fmt.Errorf("zookeeper address %q: %w", c.ZooKeeper, err)
	}
	tmpl, err := template.New("config.xml").Funcs(template.FuncMap{"x": xmlText}).Parse(clusterNodeConfig)
	if err != nil {
		return fmt.Errorf("parsing clickhouse cluster config template: %w", err)
	}
	var cfg bytes.Buffer
	err = tmpl.Execute(&cfg, map[string]any{
		"Base": n.base, "ZKPort": zkPort, "Cluster": ClusterName, "Shards": byShard,
		"Node": map[string]any{"TCP": n.tcp, "HTTP": n.http, "Srv": n.srv, "Shard": n.Shard, "Name": n.Name()},
	})
	if err != nil {
		return fmt.Errorf("rendering clickhouse cluster config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(n.base, "config.xml"), cfg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing clickhouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(n.base, "users.xml"), []byte(chUsers), 0o644); err != nil {
		return fmt.Errorf("writing clickhouse users: %w", err)
	}
	return nil
}

func (c *Cluster) launch(ctx context.Context, i int) error {
	n := c.Nodes[i]
	status := filepath.Join(n.base, "data", "status")
	if err := waitFor(ctx, 30*time.Second, func(context.Context) error { return unlocked(status) }, nil); err != nil {
		return fmt.Errorf("waiting for the previous %s to release %s: %w", n.Name(), status, err)
	}
	if err := removeTemporaryParts(filepath.Join(n.base, "data", "data")); err != nil {
		return fmt.Errorf("clearing what %s was writing when it stopped: %w", n.Name(), err)
	}
	pid, done, err := startDetached(ctx, c.bin, n.base, filepath.Join(n.base, "stdout.log"), "--config-file="+filepath.Join(n.base, "config.xml"))
	if err != nil {
		return fmt.Errorf("starting clickhouse-server %s: %w", n.Name(), err)
	}
	n.pid, n.done = pid, done
	return nil
}

func (c *Cluster) wait(ctx context.Context, i int) error {
	n := c.Nodes[i]
	st := &chState{PID: n.pid, TCPPort: n.tcp, HTTPPort: n.http}
	// A node is up once it answers and has its ZooKeeper session: ClickHouse 18.16 has crashed (SIGSEGV in
	// zkutil::ZooKeeper::createImpl) just after it first answered, while it opened that session.
	up := func(ctx context.Context) error {
		if err := chAnswers(ctx, st); err != nil {
			return err
		}
		return reachesZooKeeper(ctx, n)
	}
	if err := waitFor(ctx, 90*time.Second, up, exitedOf(n.done, n.Name())); err != nil {
		return fmt.Errorf("waiting for clickhouse %s on %s: %w\n%s\n%s", n.Name(), n.Addr, err, tail(filepath.Join(n.base, "stdout.log"), 10),
			tail(filepath.Join(n.base, "server.log"), 30))
	}
	return nil
}

// removeTemporaryParts removes the tmp_* directories of every table under data (<database>/<table>/): the
// parts a stopped server was inserting, fetching or merging. ClickHouse 18.16 removes them on start only
// if nothing in them changed within the current second, so a server killed in the middle of a merge and
// started again at once can keep a tmp_merge_<part> directory; every later attempt of that merge then
// fails ("Directory ... already exists") until the directory is a day old, and the replica's queue never
// empties (SYSTEM SYNC REPLICA waits in vain). Newer servers remove a stale directory before they merge
// into it. Nothing of a stopped server's temporary directories is committed, so removing them loses nothing.
func removeTemporaryParts(data string) error {
	dirs, err := filepath.Glob(filepath.Join(data, "*", "*", "tmp_*"))
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// reachesZooKeeper asks the node for ZooKeeper's root through its HTTP interface, which needs the node's
// ZooKeeper session.
func reachesZooKeeper(ctx context.Context, n *ClusterNode) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	query := url.Values{"query": {"SELECT count() FROM system.zookeeper WHERE path = '/'"}}
	status, body, err := httpGet(ctx, "http://"+n.HTTPAddr+"/?"+query.Encode(), 512)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s does not reach zookeeper yet: %d %s", n.Name(), status, bytes.TrimSpace(body))
	}
	return nil
}
