// mimalloc: the ingest path allocates a lot of small JSON values; glibc malloc was ~12% of CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::cli::main()
}
