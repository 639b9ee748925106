fn main() {
    shmproc::init();
    std::process::exit(shmproc::cli::main());
}
