import Metrics
import Prometheus

/// The process's Prometheus registry. swift-metrics allows one bootstrap per process, so every
/// application built in this process (tests build many) shares it.
enum PrometheusMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()
}
