import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle

/// What routes need, opened once per application.
public struct AppServices: Sendable {
    public let database: any Database
    public let objectStore: any ObjectStore
    public let adminKey: String
    let roomLog: RoomLog
    let sensorIngest: SensorIngest
    let sensorRetention: SensorRetention
    let feed: ChangeFeed
    let secretBox: SecretBox
    let webhooksReachPrivateNetworks: Bool
    let webhookDispatcher: WebhookDispatcher

    public init(configuration: Configuration, logger: Logger) async throws {
        let objectStore = try await openObjectStore(configuration.objectStore)
        // The database first: a path it cannot use is the one line to say, before keys are generated.
        let database = try await openDatabase(configuration.database, logger: logger)
        let adminKey = try KeyFile.admin(configuration, logger: logger)
        let secretKey = try KeyFile.secret(configuration, logger: logger)
        self.init(
            database: database, objectStore: objectStore, adminKey: adminKey, secretKey: secretKey,
            webhooksReachPrivateNetworks: configuration.webhooksReachPrivateNetworks, heartbeat: configuration.streamHeartbeat,
            instance: InstanceID(dataDirectory: configuration.dataDirectory), keepSensor: configuration.keepSensor, logger: logger
        )
    }

    init(
        database: any Database, objectStore: any ObjectStore, adminKey: String, secretKey: String, webhooksReachPrivateNetworks: Bool = false,
        heartbeat: Duration = .seconds(15), instance: InstanceID = InstanceID(), keepSensor: SensorKeep = SensorKeep(), logger: Logger
    ) {
        self.database = database
        self.objectStore = objectStore
        self.adminKey = adminKey
        secretBox = SecretBox(secretKey: secretKey)
        self.webhooksReachPrivateNetworks = webhooksReachPrivateNetworks
        webhookDispatcher = WebhookDispatcher(database: database, box: secretBox, allowPrivate: webhooksReachPrivateNetworks, logger: logger)
        // On PostgreSQL, changes reach the subscribers of every instance through LISTEN/NOTIFY.
        let relay = (database as? PostgresEngine).map { PostgresRelay(client: $0.client, logger: logger) }
        feed = ChangeFeed(relay: relay, heartbeat: heartbeat, logger: logger)
        roomLog = RoomLog(repository: RoomsRepository(database: database, feed: feed), store: objectStore, instance: instance, logger: logger)
        sensorIngest = SensorIngest(database: database, feed: feed)
        sensorRetention = SensorRetention(keep: keepSensor, database: database, logger: logger)
    }
}

/// The one wiring place: services, middleware and every family's routes.
public func buildApplication(_ configuration: Configuration) async throws -> some ApplicationProtocol {
    let logger = {
        var logger = Logger(label: "headcount")
        logger.logLevel = configuration.logLevel
        return logger
    }()
    let services = try await AppServices(configuration: configuration, logger: logger)
    let router: Router<AppRequestContext>
    do {
        router = try buildRouter(services, configuration: configuration)
    } catch {
        await services.database.close()
        throw error
    }
    var app = Application(
        router: router,
        server: .headcount(idleTimeout: configuration.idleTimeout, headerTimeout: configuration.headerTimeout, bodyTimeout: configuration.bodyTimeout),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Headcount"),
        services: [
            DatabaseService(database: services.database), services.roomLog, services.feed, services.webhookDispatcher,
            Watch(database: services.database, feed: services.feed, logger: logger), services.sensorRetention,
        ],
        logger: logger
    )
    app.beforeServerStarts {
        try await services.database.start(migrating: { try await Migrations.run(on: services.database, logger: logger) }, waitForServer: false)
    }
    return app
}

/// Runs the server until SIGTERM or SIGINT. Shutting down finishes the requests in flight,
/// flushes room logs and closes connections, and takes at most 9 seconds in any state (a database
/// that stopped answering included): then whatever is left is cancelled.
public func serve(_ configuration: Configuration) async throws {
    let app = try await buildApplication(configuration)
    var group = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: app.logger)
    group.maximumGracefulShutdownDuration = .seconds(9)
    group.maximumCancellationDuration = .seconds(1)
    try await ServiceGroup(configuration: group).run()
}

public func buildRouter(_ services: AppServices, configuration: Configuration) throws -> Router<AppRequestContext> {
    let routes = RouteTable()
    let router = Router(context: AppRequestContext.self)
    // Middleware first: Hummingbird attaches it to the routes added after it.
    router.add(middleware: RequestEnvelope(maxBodySize: configuration.maxBodySize, uploadLimits: ["/api/workers": WorkerUpload.maxBodyBytes]))
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: CORSPolicy(credentialedOrigins: Set(configuration.corsOrigins)))
    router.add(middleware: ErrorMiddleware(routes: routes))
    router.add(middleware: AnswerEncoding())
    _ = PrometheusMetrics.registry

    let metrics = DomainMetrics(
        database: services.database,
        families: [RoomsRepository.gauges, SensorsRepository.gauges, EventsRepository.gauges, DevicesRepository.gauges]
    )
    let feed = services.feed
    let privacy = Privacy(k: configuration.privacyK)
    let placesRepository = PlacesRepository(database: services.database, feed: services.feed)
    SystemController(database: services.database, metrics: metrics, instanceGauges: { feed.gauges }).addRoutes(to: router)
    try DocsController().addRoutes(to: router)
    RoomsController(repository: RoomsRepository(database: services.database, feed: services.feed), log: services.roomLog).addRoutes(to: router)
    ReservationsController(
        repository: ReservationsRepository(database: services.database, feed: services.feed), places: placesRepository, privacy: privacy,
        adminKey: services.adminKey
    ).addRoutes(to: router)
    SensorsController(repository: SensorsRepository(database: services.database), ingest: services.sensorIngest, retention: services.sensorRetention).addRoutes(to: router)
    let events = EventsRepository(database: services.database, feed: services.feed)
    let registrations = RegistrationsRepository(database: services.database, feed: services.feed)
    EventsController(events: events, registrations: registrations, privacy: privacy).addRoutes(to: router)
    RegistrationsController(users: UsersRepository(database: services.database), registrations: registrations).addRoutes(to: router)
    CheckinsController(checkIns: CheckinsRepository(database: services.database, feed: services.feed)).addRoutes(to: router)
    let devices = DevicesRepository(database: services.database, feed: services.feed)
    RecordsController(
        devices: devices, records: RecordsRepository(database: services.database, feed: services.feed), places: placesRepository, adminKey: services.adminKey,
        privacy: privacy
    ).addRoutes(to: router)
    DevicesController(devices: devices, adminKey: services.adminKey).addRoutes(to: router)
    WorkersController(workers: WorkersRepository(database: services.database, store: services.objectStore), adminKey: services.adminKey).addRoutes(to: router)
    TimestampsController(timestamps: TimestampsRepository(database: services.database), adminKey: services.adminKey).addRoutes(to: router)
    let places = PlacesController(places: placesRepository, adminKey: services.adminKey)
    UtilisationController(sensors: SensorsRepository(database: services.database), places: placesRepository, privacy: privacy).addRoutes(to: router)
    places.addRoutes(to: router)
    places.addLinkRoutes(to: router)
    places.addPresenceRoutes(to: router)
    let rollCalls = RollCallsRepository(database: services.database, feed: services.feed, places: placesRepository)
    RollCallsController(rollCalls: rollCalls, adminKey: services.adminKey).addRoutes(to: router)
    WebhooksController(
        webhooks: WebhooksRepository(database: services.database, box: services.secretBox), places: placesRepository,
        allowPrivate: services.webhooksReachPrivateNetworks, adminKey: services.adminKey
    ).addRoutes(to: router)
    AlertsController(database: services.database, feed: services.feed, adminKey: services.adminKey).addRoutes(to: router)
    AdjustmentsController(database: services.database, feed: services.feed, adminKey: services.adminKey, retention: services.sensorRetention).addRoutes(to: router)
    StreamController(feed: services.feed, adminKey: services.adminKey).addRoutes(to: router)
    try DashboardController().addRoutes(to: router)

    routes.record(router.routes.map { (path: $0.path.description, method: $0.method) })
    return router
}

/// Runs the database's connections for the application's lifetime.
struct DatabaseService: Service {
    let database: any Database
    func run() async throws { try await database.run() }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
    static let adminToken = Self("X-Admin-Token")!
    static let tenantID = Self("X-Tenant-ID")!
}
