job "example" {
  group "cache" {
    network {
      port "db" {
        to = 6379
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"serving on port $NOMAD_PORT_db\"; sleep 10; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
