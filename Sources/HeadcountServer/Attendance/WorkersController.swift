import Foundation
import Hummingbird

/// Seed 002's workers, behind the admin key: personal data and 1–7 face images, which Headcount
/// serves back itself rather than handing out object-store addresses.
struct WorkersController {
    let workers: WorkersRepository
    let adminKey: String

    struct WorkerView: Encodable {
        let id: String
        let document_id: String
        let first_name: String
        let last_name: String
        let email: String
        let image_urls: [String]
        let created_at: Int64

        init(_ worker: Worker) {
            id = worker.id
            document_id = worker.documentID
            first_name = worker.firstName
            last_name = worker.lastName
            email = worker.email
            let path = worker.id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? worker.id
            image_urls = (0..<worker.imageCount).map { "/api/workers/\(path)/images/\($0 + 1)" }
            created_at = worker.createdMs
        }
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/workers") { request, _ in
            try request.requireAdmin(adminKey)
            let upload = try await WorkerUpload.read(request)
            var check = Validator(upload.personalData)
            let id = check.text("id", 1...100, required: false)
            let documentID = check.text("document_id", 1...50)
            let firstName = check.text("first_name", 1...100)
            let lastName = check.text("last_name", 1...100)
            let email = check.email("email")
            try check.check()
            do {
                let worker = try await workers.create(
                    id: id ?? UUID().uuidString.lowercased(), documentID: documentID!, firstName: firstName!, lastName: lastName!,
                    email: email!, images: upload.images
                )
                return try json(WorkerView(worker), status: .created)
            } catch WorkersRepository.CreateError.idTaken {
                throw APIError.conflict("A worker with this id already exists.")
            } catch WorkersRepository.CreateError.documentTaken {
                throw APIError.conflict("A worker with this document_id already exists.")
            }
        }
        router.get("api/workers") { request, _ in
            try request.requireAdmin(adminKey)
            return try json(try await workers.workers().map(WorkerView.init))
        }
        router.get("api/workers/{workerId}") { request, context in
            try request.requireAdmin(adminKey)
            guard let worker = try await workers.worker(try context.pathID("workerId")) else { throw Self.notFound }
            return try json(WorkerView(worker))
        }
        router.put("api/workers/{workerId}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("workerId")
            var check = Validator(try await request.validatedObject(context: context), partial: true)
            guard ["first_name", "last_name", "email"].contains(where: { check.body[$0] != nil }) else {
                throw APIError.badRequest("send at least one of first_name, last_name, email")
            }
            let firstName = check.text("first_name", 1...100)
            let lastName = check.text("last_name", 1...100)
            let email = check.email("email")
            try check.check()
            guard let worker = try await workers.update(id, firstName: firstName, lastName: lastName, email: email) else { throw Self.notFound }
            return try json(WorkerView(worker))
        }
        router.delete("api/workers/{workerId}") { request, context in
            try request.requireAdmin(adminKey)
            guard try await workers.delete(try context.pathID("workerId")) else { throw Self.notFound }
            return Response(status: .noContent)
        }
        router.get("api/workers/{workerId}/images/{position}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("workerId")
            guard let position = context.parameters.get("position").flatMap(Int.init), (1...WorkerUpload.maxImages).contains(position),
                let image = try await workers.image(id, position: position)
            else { throw APIError.notFound("Image not found.") }
            return Response(
                status: .ok,
                headers: [.contentType: image.contentType, .cacheControl: "private, max-age=3600"],
                body: .init(byteBuffer: image.bytes)
            )
        }
    }

    static let notFound = APIError.notFound("Worker not found.")
}
