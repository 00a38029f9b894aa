# An example job, written by `drover job init`.
#
# It runs a small shell loop with the raw_exec driver, so it works on any client that has
# raw_exec enabled (`drover agent -dev` enables it). To run a container instead, set
# `driver = "docker"` and give `config` an `image`.
#
# Validate it:  drover job validate example.nomad.hcl
# Run it:       drover job run example.nomad.hcl

job "example" {
  # Run anywhere; list datacenters here to pin the job, e.g. ["dc1", "dc2"].
  datacenters = ["*"]

  # "service" jobs run until stopped; "batch" jobs run to completion.
  type = "service"

  # Replace one allocation at a time, waiting for it to be healthy first.
  update {
    max_parallel      = 1
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = false
    canary            = 0
  }

  # When a node drains, move one allocation at a time.
  migrate {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "5m"
  }

  group "cache" {
    count = 1

    network {
      port "db" {
        to = 6379
      }
    }

    # Restart a failing task twice in 30 minutes, then give up and let the
    # scheduler place the allocation elsewhere.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    ephemeral_disk {
      size = 300
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"serving on port $NOMAD_PORT_db\"; sleep 10; done"]
      }

      env {
        GREETING = "hello from ${NOMAD_ALLOC_NAME}"
      }

      # CPU in MHz, memory in MB.
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
