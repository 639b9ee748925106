fn main() {
    shmproc_batch::App::new().main()
}
