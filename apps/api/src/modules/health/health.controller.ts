import { Controller, Get, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '@app/common';
import { HealthService } from './health.service';

@ApiTags('Operations')
@Controller('health')
export class HealthController {
  constructor(private readonly health: HealthService) {}

  @Public()
  @Get()
  @ApiOperation({ summary: 'Liveness and dependency checks (seed §8.4)' })
  @ApiOkResponse({ description: '`healthy`, or `degraded` when only the shared cache (Redis) is unreachable' })
  @ApiServiceUnavailableResponse({ description: '`unhealthy`: the database is unreachable' })
  async check(@Res({ passthrough: true }) reply: FastifyReply) {
    const report = await this.health.report();
    void reply.status(report.status === 'unhealthy' ? 503 : 200);
    return report;
  }
}
