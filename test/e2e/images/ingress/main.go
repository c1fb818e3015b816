// Command ingress is the e2e tests' in-cluster ingress proxy, built the way
// Envoy-based gateways and ingress controllers route: it does not go
// through the Service's ClusterIP but learns the endpoints itself by
// watching the Service's EndpointSlices, routes only to endpoints whose
// conditions.ready is true, applies a change after a batching delay (a
// controller's sync: longer than kube-proxy's), and keeps a pool of
// keep-alive connections to the upstream pods.
//
//	ingress --service NAME [--namespace NS] [--listen :8080] [--health :8081] [--batch 3s]
//
// An upstream error (refused, reset, no route) is answered with 502, as
// such proxies do; no endpoint at all with 503. Every applied endpoint set
// and every upstream error is logged with a timestamp.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run() error {
	service := flag.String("service", "", "the Service whose EndpointSlices to route to (required)")
	namespace := flag.String("namespace", os.Getenv("POD_NAMESPACE"), "its namespace")
	listen := flag.String("listen", ":8080", "proxy address")
	health := flag.String("health", ":8081", "GET /readyz: ready once the first endpoint set is applied")
	batch := flag.Duration("batch", 3*time.Second, "delay before a change of the EndpointSlices is applied")
	flag.Parse()
	if *service == "" || *namespace == "" {
		return fmt.Errorf("--service and --namespace (or $POD_NAMESPACE) are required")
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(*namespace))
	epSlices := factory.Discovery().V1().EndpointSlices()
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: *service})
	r := &router{}
	var (
		mu      sync.Mutex
		pending *time.Timer
		changes int
	)
	changed := func() { // batches changes: the first one starts the timer
		mu.Lock()
		defer mu.Unlock()
		changes++
		if pending != nil {
			return
		}
		pending = time.AfterFunc(*batch, func() {
			mu.Lock()
			n := changes
			pending, changes = nil, 0
			mu.Unlock()
			list, err := epSlices.Lister().EndpointSlices(*namespace).List(sel)
			if err != nil {
				logf("listing EndpointSlices: %v", err)
				return
			}
			eps := readyEndpoints(list)
			r.set(eps)
			logf("applied %d ready endpoints %v (%d changes batched)", len(eps), eps, n)
		})
	}
	_, err = epSlices.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			s, ok := obj.(*discoveryv1.EndpointSlice)
			return ok && s.Labels[discoveryv1.LabelServiceName] == *service
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { changed() },
			UpdateFunc: func(any, any) { changed() },
			DeleteFunc: func(any) { changed() },
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", r.next()
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     60 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.URL.Host == "" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			logf("upstream %s: %v", req.URL.Host, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if len(r.get()) == 0 {
			http.Error(w, "no endpoints yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	go func() {
		_ = (&http.Server{Addr: *health, Handler: mux, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
	}()
	srv := &http.Server{Addr: *listen, Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		logf("got SIGTERM, exiting")
		_ = srv.Close()
	}()
	logf("routing %s -> EndpointSlices of %s/%s, batching delay %s", *listen, *namespace, *service, *batch)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// readyEndpoints lists IP:port of every endpoint whose conditions.ready is
// true (nil means ready, as the EndpointSlice API defines it).
func readyEndpoints(list []*discoveryv1.EndpointSlice) []string {
	var eps []string
	for _, s := range list {
		if len(s.Ports) == 0 || s.Ports[0].Port == nil {
			continue
		}
		port := strconv.Itoa(int(*s.Ports[0].Port))
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				eps = append(eps, net.JoinHostPort(a, port))
			}
		}
	}
	slices.Sort(eps)
	return slices.Compact(eps)
}

// router hands out the applied endpoints round robin.
type router struct {
	eps atomic.Pointer[[]string]
	n   atomic.Uint64
}

func (r *router) set(eps []string) { r.eps.Store(&eps) }

func (r *router) get() []string {
	if p := r.eps.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *router) next() string {
	eps := r.get()
	if len(eps) == 0 {
		return ""
	}
	return eps[r.n.Add(1)%uint64(len(eps))]
}
