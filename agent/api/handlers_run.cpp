// POST /v1/apps/{app}/runs: deployctl run (docs/api.md, "Running a command").
// The request is answered 101 and the connection then carries frames
// (common/run_frames.hpp) between the client and the command: its input,
// output and exit status, window sizes, signals and pings.
#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/run_session.hpp>
#include <agent/runtime/one_off.hpp>
#include <common/command_line.hpp>
#include <common/log.hpp>
#include <common/run_frames.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;
namespace run = common::run;

constexpr std::size_t k_max_args = 4096;
constexpr std::size_t k_max_argv_bytes = 128 * 1024;

struct Parsed {
    OneOffRequest request;
    runtime::OneOffIo io;
};

common::Result<Parsed> parse_run(const Request& request, const std::string& app) {
    auto body = parse_json_body(request, false);
    if (!body)
        return body.error();
    if (!body->is_object())
        return make_error(ErrorKind::bad_request, R"(expected {"argv": ["command", ...]})");
    Parsed parsed;
    parsed.request.app = app;
    const auto argv = body->find("argv");
    if (argv == body->end() || !argv->is_array() || argv->empty())
        return make_error(ErrorKind::bad_request,
                          "\"argv\" must be a non-empty array of strings: the command to run");
    if (argv->size() > k_max_args)
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"argv\" has more than {} arguments", k_max_args));
    std::size_t bytes = 0;
    for (const auto& arg : *argv) {
        if (!arg.is_string())
            return make_error(
                ErrorKind::bad_request,
                fmt::format("\"argv\" must hold strings, not {}", describe_value(arg)));
        auto text = arg.get<std::string>();
        if (text.find('\0') != std::string::npos)
            return make_error(ErrorKind::bad_request, "an argument holds a NUL byte");
        bytes += text.size() + 1;
        parsed.request.argv.push_back(std::move(text));
    }
    if (bytes > k_max_argv_bytes)
        return make_error(ErrorKind::bad_request,
                          fmt::format("\"argv\" is longer than {} bytes", k_max_argv_bytes));
    if (parsed.request.argv.front().empty())
        return make_error(ErrorKind::bad_request, "the command's name is empty");
    if (auto release = body->find("release"); release != body->end() && !release->is_null()) {
        if (!release->is_string() || !is_release_id(release->get<std::string>()))
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"release\" must be a release id like \"v2\", not {}",
                                          describe_value(*release)));
        parsed.request.release = release->get<std::string>();
    }
    auto tty = bool_member(*body, "tty");
    if (!tty)
        return tty.error();
    auto stdin_open = bool_member(*body, "stdin");
    if (!stdin_open)
        return stdin_open.error();
    parsed.request.tty = parsed.io.tty = *tty;
    parsed.request.stdin_open = parsed.io.stdin_open = *stdin_open;
    for (auto [name, field] : {std::pair{"cols", &parsed.io.cols}, {"rows", &parsed.io.rows}}) {
        auto it = body->find(name);
        if (it == body->end() || it->is_null())
            continue;
        if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 65535)
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"{}\" must be a number from 1 to 65535", name));
        *field = static_cast<unsigned>(it->get<long long>());
    }
    if (auto term = body->find("term"); term != body->end() && !term->is_null()) {
        if (!term->is_string() || term->get<std::string>().size() > 64)
            return make_error(ErrorKind::bad_request, "\"term\" must be a terminal name");
        for (char c : term->get<std::string>())
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_' &&
                c != '+')
                return make_error(ErrorKind::bad_request, "\"term\" must be a terminal name");
        parsed.request.term = term->get<std::string>();
    }
    return parsed;
}

Response run_command(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (request.upgrade != run::k_upgrade)
        return error_response(400, "bad_request",
                              fmt::format("POST /v1/apps/{}/runs opens a session for deployctl run "
                                          "and needs the header \"Upgrade: {}\"",
                                          *app, run::k_upgrade));
    auto parsed = parse_run(request, *app);
    if (!parsed)
        return error_response(parsed.error());
    auto prepared = context.service.one_off(parsed->request);
    if (!prepared)
        return error_response(prepared.error());
    auto job = std::make_shared<OneOff>(std::move(*prepared));
    const json argv = parsed->request.argv;
    Response response;
    response.status = 101;
    response.upgrade_protocol = std::string(run::k_upgrade);
    response.audit_detail = argv.dump();
    response.body = json{{"release", job->release}}.dump(); // for the audit log; not sent
    const std::string label =
        fmt::format("run {} {} {}", *app, job->release, common::shell_join(parsed->request.argv));
    response.upgrade = [job, io = parsed->io, label](Duplex& client) {
        common::log_info(label + ": started");
        const json started = {{"release", job->release}, {"engine", job->engine}};
        if (client.write(run::encode_frame(run::Frame::started, started.dump()))) {
            auto command = runtime::start_one_off(job->plan, io);
            if (!command) {
                json status = {{"status", 127}, {"error", command.error().message}};
                client.write(run::encode_frame(run::Frame::exit, status.dump()));
            } else {
                relay_frames(client, *command, label);
                command->end(k_end_grace);
            }
        }
        if (job->plan.cleanup)
            job->plan.cleanup();
        common::log_info(label + ": ended");
    };
    return response;
}

} // namespace

void add_run_routes(Router& router, ApiContext& context) {
    router.add("POST", "/v1/apps/{app}/runs",
               [&context](const Request& request) { return run_command(context, request); });
}

} // namespace agent::api
